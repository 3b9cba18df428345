"""What machine a number was measured on: the CPU model, the features that decide the LLM's speed
(AVX-512, native bf16, AMX, AVX2), cores, threads and the dtype ``auto`` picks there.

Timings differ about threefold between CPU kinds this project runs on (AVX-512 with bf16 against
AVX2 only), so every benchmark result records ``machine_info()`` and every README timing names its
CPU. ``python -m tap.machine`` prints it.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

#: CPU flags that matter for running the frozen LLM on CPU, as /proc/cpuinfo names them
FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx_vnni")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    features: tuple[str, ...]  # the ``FEATURES`` this CPU has
    cores: int

    @property
    def native_bf16(self) -> bool:
        """bf16 matmuls in hardware (AVX-512 bf16 or AMX): bf16 is 2-3x faster than fp32 there, emulated elsewhere."""
        return "avx512_bf16" in self.features or "amx_bf16" in self.features

    @property
    def kind(self) -> str:
        """A short name for the CPU class timings depend on."""
        if "amx_bf16" in self.features:
            return "AMX"
        if self.native_bf16:
            return "AVX-512 + bf16"
        if "avx512f" in self.features:
            return "AVX-512 (no bf16)"
        return "AVX2" if "avx2" in self.features else "no AVX2"


def cpu_info(cpuinfo: str | None = None) -> CpuInfo:
    """Parse ``/proc/cpuinfo`` (or the text given): model name, the ``FEATURES`` present, logical cores."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return CpuInfo(model or platform.machine() or "unknown", tuple(f for f in FEATURES if f in flags),
                   os.cpu_count() or 1)


#: oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) below AVX-512, and below AVX-512 bf16 / AMX
_ONEDNN_NO_AVX512 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"}
_ONEDNN_NO_BF16 = {"AVX512_CORE", "AVX512_CORE_VNNI"}
_ONEDNN_NO_AMX = {"AVX512_CORE_BF16", "AVX10_1_512"}


def isa_cap(env: dict | None = None) -> str | None:
    """The instruction-set cap set on PyTorch's CPU kernels by environment (``ATEN_CPU_CAPABILITY``,
    ``ONEDNN_MAX_CPU_ISA``), as ``NAME=value`` pairs; None when nothing caps them. A cap below AVX-512 bf16
    makes bf16 emulated whatever the CPU has (``benchmarks/env_throughput.py --isa avx2`` sets one).
    """
    env = os.environ if env is None else env
    caps = [f"{k}={env[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
            if env.get(k, "").strip().upper() not in ("", "ALL", "DEFAULT_ISA")]
    return ", ".join(caps) or None


def effective_cpu(cpu: CpuInfo, env: dict | None = None) -> CpuInfo:
    """``cpu`` as PyTorch's kernels see it under the environment's ISA caps: the features a cap turns off are
    dropped (capped at AVX2, an AVX-512 bf16 CPU runs bf16 emulated, as an AVX2-only CPU does).
    """
    env = os.environ if env is None else env
    onednn = env.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    aten = env.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if onednn in _ONEDNN_NO_AVX512 or aten in ("default", "avx2"):
        drop = ("avx512", "amx")
    elif onednn in _ONEDNN_NO_BF16:
        drop = ("avx512_bf16", "amx")
    elif onednn in _ONEDNN_NO_AMX:
        drop = ("amx",)
    else:
        return cpu
    return CpuInfo(cpu.model, tuple(f for f in cpu.features if not f.startswith(drop)), cpu.cores)


def machine_info(dtype: str | None = None, threads: int | None = None) -> dict:
    """What to record next to a timing: CPU, features, cores, torch threads, the dtype used, library versions.
    ``cpu_kind`` is the kind the kernels see (``isa_cap`` names the environment's cap, if any).
    """
    import torch

    raw = cpu_info()
    cpu = effective_cpu(raw)
    auto = "bfloat16" if cpu.native_bf16 else "float32"  # what dtype=auto picks on CPU (tap.llm.hf.resolve_dtype)
    return {"cpu": cpu.model, "cpu_kind": cpu.kind, "features": list(raw.features), "cores": cpu.cores,
            "isa_cap": isa_cap(), "threads": threads or torch.get_num_threads(), "dtype": dtype or auto,
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def main() -> None:
    print(json.dumps({**asdict(cpu_info()), **machine_info()}, indent=1))


if __name__ == "__main__":
    main()
