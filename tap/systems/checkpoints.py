"""One loading path for TaP checkpoints: a ``.ckpt`` file or a run folder, checked for its kind."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from tap.errors import TapError

KIND_KEY = "tap_system"
#: prefix -> source and digest of each pretrained backbone a checkpoint holds by reference
FROZEN_KEY = "tap_pretrained"
#: state-dict key -> per-row scales of the tensors an exported checkpoint stores as int8 (``tap.systems.export``)
INT8_KEY = "tap_int8_scales"


#: the trained world models that ship inside the package, per frozen LLM (``python -m tap.pipeline --train`` makes
#: one; ``tap/systems/pretrained/README.md`` says how each was trained)
PRETRAINED = Path(__file__).parent / "pretrained"
SHIPPED_WORLD_MODELS = {"smollm2-135m-instruct-q4_1": "world_model-smollm2.ckpt"}


def shipped_world_model(model: str = "smollm2") -> Path:
    """The world model that ships for the frozen LLM ``model`` (any alias of an offline model)."""
    from tap.llm.provision import model_slug

    name = SHIPPED_WORLD_MODELS.get(model_slug(model))
    if name is None or not (PRETRAINED / name).exists():
        raise TapError(f"no world model ships for the frozen LLM {model!r} (one ships for: "
                       f"{', '.join(SHIPPED_WORLD_MODELS)}). Fix: train one against it (`python train.py fit --config "
                       f"configs/world_model.yaml --data.init_args.model {model}`) and pass --checkpoint, or use the "
                       "'random' preset, which needs none.")
    return PRETRAINED / name


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint a user means: the file itself, or in a folder (searched recursively) ``best.ckpt``,
    else ``last.ckpt``, else the newest ``.ckpt``.
    """
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        rank = {"best.ckpt": 0, "last.ckpt": 1}
        found = sorted(p.rglob("*.ckpt"), key=lambda f: (rank.get(f.name, 2), -f.stat().st_mtime))
        if found:
            return found[0]
        raise TapError(f"no .ckpt file under {p}; point at a checkpoint file or the run folder that holds one.")
    raise TapError(f"checkpoint {p} does not exist. Fix: train one first (e.g. `python train.py fit --config "
                   "configs/encoder.yaml`, then configs/world_model.yaml) or give the path it was saved to.")


def read_checkpoint(path: str | Path, kind: str | tuple[str, ...]) -> tuple[Path, dict]:
    """Load a checkpoint dict on CPU and check it was saved by the system ``kind`` (or one of several)."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    file = find_checkpoint(path)
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file
        raise TapError(f"cannot read checkpoint {file}: it is damaged or not a checkpoint written by train.py "
                       f"({type(err).__name__}: {err}). Fix: point at a .ckpt from a fit run (e.g. "
                       "checkpoints/world_model/best.ckpt), or train again.") from err
    found = ckpt.get(KIND_KEY) if isinstance(ckpt, dict) else None
    if found not in kinds:
        what = f"a {found} checkpoint" if found else "not a TaP checkpoint"
        raise TapError(f"{file} is {what}, but a {' or '.join(kinds)} checkpoint is needed here.")
    return file, ckpt


@contextmanager
def own_hyperparameters() -> Iterator[None]:
    """Build a LightningModule inside another one's ``__init__`` with its *own* hyperparameters.

    LightningCLI hands the outer module's parsed hyperparameters to every ``save_hyperparameters``
    call made while the outer module is constructed; a nested system would record the wrong ones.
    """
    from lightning.pytorch.core.mixins import hparams_mixin

    token = hparams_mixin._given_hyperparameters.set(None)
    try:
        yield
    finally:
        hparams_mixin._given_hyperparameters.reset(token)


def init_hparams(ckpt: dict) -> dict:
    """The constructor arguments saved in a checkpoint (LightningCLI's private ``_``-keys dropped)."""
    return {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
