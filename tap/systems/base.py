"""What every TaP system shares: one ``_shared_step`` per stage, evaluation-epoch read-outs, the
embedding projector, and self-describing checkpoints loaded through one path, which hold the trained weights
and buffers only (pretrained backbones by reference).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import lightning as L
import torch

from tap.errors import TapError
from tap.systems.checkpoints import FROZEN_KEY, INT8_KEY, KIND_KEY, init_hparams, read_checkpoint
from tap.systems.tensorboard import LatentProjector

S = TypeVar("S", bound="TapSystem")


class TapSystem(L.LightningModule):
    """Base of the systems. Subclasses set ``self.projector`` and implement ``_shared_step(batch, stage)``
    (returning the loss) and ``_end_eval(stage)`` (logging what was gathered over an eval epoch).

    With sibling data the loaders give ``{"windows": batch, "siblings": batch}`` (either may be None
    in evaluation); windows go to ``_shared_step``, sibling groups to ``_sibling_step``, which systems
    that learn nothing from sibling groups leave as it is (they are skipped).
    """

    projector: LatentProjector

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def _sibling_step(self, batch: dict, stage: str) -> torch.Tensor | None:
        return None

    def _end_eval(self, stage: str) -> None:
        raise NotImplementedError

    def _step(self, batch: dict, stage: str) -> torch.Tensor | None:
        if "windows" not in batch:
            return self._shared_step(batch, stage)
        losses = []
        if batch.get("windows") is not None:
            losses.append(self._shared_step(batch["windows"], stage))
        if batch.get("siblings") is not None:
            losses.append(self._sibling_step(batch["siblings"], stage))
        losses = [x for x in losses if x is not None]
        return sum(losses) if losses else None  # type: ignore[return-value]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")  # type: ignore[return-value]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")
        self.projector.end_validation()

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")
        self.projector.end_test(self)

    def on_fit_end(self) -> None:
        self.projector.end_fit(self)

    def _pretrained_backbones(self) -> dict[str, object]:
        """Module prefix -> every pretrained text backbone inside (whose weights come from a package, not training)."""
        from tap.models.text import MiniLMText

        return {f"{name}." if name else "": m for name, m in self.named_modules() if isinstance(m, MiniLMText)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Kind-tag the checkpoint and keep pretrained backbones out of it: their weights are recorded by reference
        (source and digest) and restored from that source on load (``on_load_checkpoint``).
        """
        checkpoint[KIND_KEY] = type(self).__name__
        state, refs = checkpoint["state_dict"], {}
        for prefix, backbone in self._pretrained_backbones().items():
            refs[prefix] = backbone.reference()
            for key in backbone.pretrained_keys:
                state.pop(prefix + key, None)
        if refs:
            checkpoint[FROZEN_KEY] = refs

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Put the pretrained backbones' weights back into a checkpoint saved by reference, after checking that
        this module's backbones (just loaded from their source) are the ones it was trained with.
        """
        scales = checkpoint.pop(INT8_KEY, None)
        if scales:  # an exported checkpoint: its large tensors back to floats
            from tap.systems.export import dequantize_rows

            state = checkpoint["state_dict"]
            for key, scale in scales.items():
                state[key] = dequantize_rows(state[key], scale)
        refs = checkpoint.get(FROZEN_KEY)
        if not refs:
            return
        mine = self._pretrained_backbones()
        state, own = checkpoint["state_dict"], self.state_dict()
        for prefix, ref in refs.items():
            backbone = mine.get(prefix)
            if backbone is None:
                raise TapError(f"the checkpoint holds a pretrained text backbone at {prefix!r} that this "
                               f"{type(self).__name__} does not build; it was saved by another configuration.")
            have = backbone.reference()
            if have["sha256"] != ref["sha256"]:
                raise TapError(f"the checkpoint was trained on the text backbone {ref['source']} (sha256 "
                               f"{ref['sha256'][:12]}…), but {have['source']} loads other weights here (sha256 "
                               f"{have['sha256'][:12]}…). Fix: install the same backbone, or train again.")
            for key in backbone.pretrained_keys:
                state[prefix + key] = own[prefix + key]

    @classmethod
    def _load(cls: type[S], path: str | Path) -> S:
        """Rebuild from a checkpoint file or run folder saved by this very system class."""
        _, ckpt = read_checkpoint(path, cls.__name__)
        return cls._build(ckpt)

    @classmethod
    def _build(cls: type[S], ckpt: dict) -> S:
        """Rebuild from a checkpoint dict already read (and kind-checked) by ``read_checkpoint``; arguments
        renamed since the checkpoint was saved (``RENAMED_HPARAMS``) are passed under their new names.
        """
        renamed = getattr(cls, "RENAMED_HPARAMS", {})
        model = cls(**{renamed.get(k, k): v for k, v in init_hparams(ckpt).items()})
        model.restore(ckpt)
        return model

    def restore(self, ckpt: dict) -> None:
        """Load a checkpoint dict's weights into this module as built (``on_load_checkpoint`` first: pretrained
        backbones back in, int8 tensors back to floats), as ``_build`` and the systems that nest another do.
        """
        self.on_load_checkpoint(ckpt)
        self.load_state_dict(ckpt["state_dict"])
