"""What every TaP system shares: one ``_shared_step`` per stage, evaluation-epoch read-outs, the
embedding projector, and self-describing checkpoints loaded through one path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import lightning as L
import torch

from tap.systems.checkpoints import KIND_KEY, init_hparams, read_checkpoint
from tap.systems.tensorboard import LatentProjector

S = TypeVar("S", bound="TapSystem")


class TapSystem(L.LightningModule):
    """Base of the systems. Subclasses set ``self.projector`` and implement ``_shared_step(batch, stage)``
    (returning the loss) and ``_end_eval(stage)`` (logging what was gathered over an eval epoch).
    """

    projector: LatentProjector

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def _end_eval(self, stage: str) -> None:
        raise NotImplementedError

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")
        self.projector.end_validation()

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")
        self.projector.end_test(self)

    def on_fit_end(self) -> None:
        self.projector.end_fit(self)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[KIND_KEY] = type(self).__name__

    @classmethod
    def _load(cls: type[S], path: str | Path) -> S:
        """Rebuild from a checkpoint file or run folder saved by this very system class."""
        _, ckpt = read_checkpoint(path, cls.__name__)
        return cls._build(ckpt)

    @classmethod
    def _build(cls: type[S], ckpt: dict) -> S:
        """Rebuild from a checkpoint dict already read (and kind-checked) by ``read_checkpoint``."""
        model = cls(**init_hparams(ckpt))
        model.load_state_dict(ckpt["state_dict"])
        return model
