"""The project's LightningCLI: ``python train.py fit --config configs/<name>.yaml``.

Models and the data module are chosen in YAML with ``class_path``/``init_args``; the resolved
config is saved beside every run so checkpoints can be rebuilt without the original command.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from tap.collection.datamodule import TriplesDataModule


class TapCLI(LightningCLI):
    """LightningCLI with the triples DataModule as the default data and strict config parsing."""


def main(args: list[str] | None = None) -> TapCLI:
    return TapCLI(
        datamodule_class=TriplesDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )
