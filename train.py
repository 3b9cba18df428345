"""Train TaP's models: ``python train.py fit --config configs/<name>.yaml`` (LightningCLI).

    python train.py fit --config configs/encoder.yaml        # contrastive chain encoder
    python train.py fit --config configs/world_model.yaml    # world model on the frozen encoder
    python train.py test --config configs/world_model.yaml --ckpt_path checkpoints/world_model/best.ckpt

Add ``--config configs/debug.yaml`` to any of them for a seconds-long run.
"""

from tap.quiet import quiet

quiet()  # before the libraries load: their banners and per-file bars stay out of the output

from tap.cli import run  # noqa: E402 - after quiet()

if __name__ == "__main__":
    run()
