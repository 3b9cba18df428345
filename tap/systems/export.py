"""Export a trained checkpoint to ship: what planning needs, nothing a fit needs to resume.

    python -m tap.systems.export checkpoints/quickstart/world_model tap/systems/pretrained/world_model-smollm2.ckpt

Keeps the kind tag, the constructor arguments, the data settings, the pretrained backbones' references and the
trained weights and buffers; drops the optimizer and scheduler states, loop and callback states; stores float
tensors of ``min_numel`` or more elements as int8 with one fp32 scale per output row (symmetric; the error is at
most half a step, 1/254 of the row's largest magnitude; ``TapSystem.on_load_checkpoint`` restores them) and the
rest exactly; records the frozen LLM the data came from (``frozen_model.txt`` beside the checkpoint, written by
``python -m tap.pipeline``, or ``--frozen-llm``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tap.errors import TapError, exit_code
from tap.systems.checkpoints import FROZEN_KEY, INT8_KEY, KIND_KEY, find_checkpoint

#: the frozen LLM (model@dtype) whose answers trained an exported checkpoint
FROZEN_LLM_KEY = "tap_frozen_llm"
_KEEP = (KIND_KEY, FROZEN_KEY, "state_dict", "hyper_parameters", "datamodule_hyper_parameters", "epoch",
         "global_step", "pytorch-lightning_version")


def export_checkpoint(src: str | Path, dst: str | Path, frozen_llm: str | None = None, min_numel: int = 1024) -> Path:
    """Write the shippable form of the checkpoint at ``src`` (file or run folder) to ``dst``; returns ``dst``."""
    file = find_checkpoint(src)
    ckpt = torch.load(file, map_location="cpu", weights_only=False)
    if KIND_KEY not in ckpt:
        raise TapError(f"{file} is not a TaP checkpoint (no {KIND_KEY!r}); export one written by train.py.")
    if frozen_llm is None:
        marker = file.parent / "frozen_model.txt"
        frozen_llm = marker.read_text().strip() if marker.exists() else None
    out = {k: ckpt[k] for k in _KEEP if k in ckpt}
    out["state_dict"], scales = {}, {}
    for key, value in ckpt["state_dict"].items():
        if value.is_floating_point() and value.numel() >= min_numel:
            out["state_dict"][key], scales[key] = quantize_rows(value)
        else:
            out["state_dict"][key] = value
    if scales:
        out[INT8_KEY] = scales
    if frozen_llm:
        out[FROZEN_LLM_KEY] = frozen_llm
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    torch.save(out, tmp)
    tmp.replace(dst)
    return dst


def quantize_rows(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``value`` as int8 and one fp32 scale per row of its first dimension (all of it for a vector)."""
    rows = value.detach().float().reshape(value.shape[0] if value.dim() > 1 else 1, -1)
    scale = (rows.abs().amax(dim=1) / 127).clamp_min(1e-12)  # (rows,)
    q = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(value.shape), scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The inverse of ``quantize_rows`` (to fp32, up to half a step per element)."""
    rows = q.float().reshape(scale.shape[0], -1) * scale[:, None]
    return rows.reshape(q.shape)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tap.systems.export", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="a checkpoint file or run folder (its best.ckpt)")
    p.add_argument("dst", help="the file to write")
    p.add_argument("--frozen-llm", help="the frozen LLM (model@dtype) the data came from, if not recorded beside src")
    args = p.parse_args(argv)

    def run() -> int:
        dst = export_checkpoint(args.src, args.dst, args.frozen_llm)
        print(f"wrote {dst} ({dst.stat().st_size / 2**20:.1f} MiB)")
        return 0

    return exit_code(run)


if __name__ == "__main__":
    raise SystemExit(main())
