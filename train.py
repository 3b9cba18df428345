"""Train TaP's models: ``python train.py fit --config configs/<name>.yaml`` (LightningCLI)."""

from tap.cli import main

if __name__ == "__main__":
    main()
