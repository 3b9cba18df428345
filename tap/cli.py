"""The project's LightningCLI: ``python train.py fit --config configs/<name>.yaml``.

The system (``tap.systems.ContrastiveEncoder`` or ``tap.systems.WorldModel``) and the data module are
chosen in YAML with ``class_path``/``init_args``; wrong keys are rejected by name. A
``ModelCheckpoint`` is always present (``checkpoint.*`` in YAML: what to monitor, where to save),
and the resolved config is saved beside every run, so checkpoints can be rebuilt without the
original command.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from tap.collection.datamodule import TriplesDataModule
from tap.errors import TapError


class TapCLI(LightningCLI):
    """LightningCLI with the triples DataModule, any TaP system, and a configurable checkpoint callback."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # one file per trained model (best.ckpt; --checkpoint.save_last=true adds last.ckpt to resume from), and a
        # retrain into the same folder replaces it (Lightning would write best-v1.ckpt beside a stale one)
        parser.set_defaults({"checkpoint.save_last": False, "checkpoint.save_top_k": 1,
                             "checkpoint.enable_version_counter": False})

    def before_instantiate_classes(self) -> None:
        """Refuse a misspelled ``loss_scales`` key with one sentence, before any model is built."""
        import importlib

        from tap.errors import unknown_loss_terms

        config = self.config[self.subcommand] if self.subcommand else self.config
        model = config.get("model") or {}
        module, _, name = str(model.get("class_path", "")).rpartition(".")
        try:
            known = getattr(getattr(importlib.import_module(module), name), "LOSS_TERMS", None)
        except (ImportError, ValueError):
            return
        scales = (model.get("init_args") or {}).get("loss_scales") or {}
        if known is not None and set(scales) - set(known):
            raise unknown_loss_terms(set(scales) - set(known), known)

    def _check_ckpt_path(self) -> None:
        ckpt = self.config[self.subcommand].get("ckpt_path")
        if ckpt and ckpt not in ("last", "best", "hpc", "registry") and not Path(ckpt).exists():
            raise TapError(f"--ckpt_path {ckpt} does not exist. Fix: pass a .ckpt file written by a fit run "
                           "(see checkpoint.dirpath in its config, e.g. checkpoints/world_model/best.ckpt).")

    def before_fit(self) -> None:
        self._check_ckpt_path()

    def before_validate(self) -> None:
        self._check_ckpt_path()

    def before_test(self) -> None:
        self._check_ckpt_path()

    def after_fit(self) -> None:
        """Put the resolved config beside the checkpoints too, so a checkpoint folder says what made it."""
        dirpath = self.config[self.subcommand].get("checkpoint", {}).get("dirpath")
        if dirpath and Path(dirpath).is_dir():
            resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False, format="yaml"))[self.subcommand]
            (Path(dirpath) / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))


def main(args: list[str] | None = None) -> TapCLI:
    from tap.quiet import quiet

    quiet()
    return TapCLI(
        model_class=L.LightningModule,
        subclass_mode_model=True,
        datamodule_class=TriplesDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


def run() -> None:
    """The ``tap-train`` console script: ``train.py`` without the file (a ``TapError`` is one line)."""
    import sys

    try:
        main()
    except TapError as err:
        sys.exit(f"error: {err}")
