"""CPU detection on faked /proc/cpuinfo contents, and the dtype ``auto`` picks for each CPU kind."""

import pytest
import torch

from tap.llm.hf import resolve_dtype
from tap.machine import cpu_info, machine_info

AVX512_BF16 = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
AVX2_ONLY = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU E5-2686 v4\nflags\t\t: fpu sse avx avx2 fma\n"
AMX = "model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


@pytest.mark.parametrize("text,kind,bf16", [(AVX512_BF16, "AVX-512 + bf16", True), (AVX2_ONLY, "AVX2", False),
                                            (AMX, "AMX", True), ("", "no AVX2", False)])
def test_cpu_kinds_from_faked_cpuinfo(text, kind, bf16):
    cpu = cpu_info(text)
    assert cpu.kind == kind and cpu.native_bf16 == bf16 and cpu.cores >= 1
    assert cpu.model != "" and "fpu" not in cpu.features  # only the features that matter are kept


def test_auto_dtype_follows_the_cpu(monkeypatch, capsys):
    monkeypatch.setattr("tap.llm.hf._SAID", set())
    monkeypatch.setattr("tap.llm.hf.cpu_info", lambda: cpu_info(AVX2_ONLY))
    assert resolve_dtype("auto", "cpu") == torch.float32
    said = capsys.readouterr().err
    assert "dtype auto -> float32: AVX2 CPU without bf16" in said and "int8" in said  # what it picked and why
    resolve_dtype("auto", "cpu")
    assert capsys.readouterr().err == ""  # said once per process
    monkeypatch.setattr("tap.llm.hf.cpu_info", lambda: cpu_info(AVX512_BF16))
    assert resolve_dtype("auto", "cpu") == torch.bfloat16
    assert resolve_dtype("fp32", "cpu") == torch.float32  # an explicit choice always wins


def test_machine_info_names_what_a_timing_depends_on():
    info = machine_info(dtype="float32", threads=2)
    assert {"cpu", "cpu_kind", "features", "cores", "threads", "dtype", "torch"} <= set(info)
    assert info["threads"] == 2 and info["dtype"] == "float32"



def test_int8_kernel_follows_the_cpu_and_the_fbgemm_cap(monkeypatch):
    from tap.llm.hf import int8_kernel

    monkeypatch.delenv("FBGEMM_ENABLE_INSTRUCTIONS", raising=False)
    monkeypatch.setattr("tap.llm.hf.cpu_info", lambda: cpu_info(AVX512_BF16))
    assert int8_kernel() == "vnni"
    monkeypatch.setenv("FBGEMM_ENABLE_INSTRUCTIONS", "AVX2")  # capped below VNNI: other int8 sums
    assert int8_kernel() == "avx2"
    monkeypatch.setenv("FBGEMM_ENABLE_INSTRUCTIONS", "AVX512_E1")
    assert int8_kernel() == "vnni"
    monkeypatch.delenv("FBGEMM_ENABLE_INSTRUCTIONS")
    monkeypatch.setattr("tap.llm.hf.cpu_info", lambda: cpu_info(AVX2_ONLY))
    assert int8_kernel() == "avx2"


def test_isa_caps_in_the_environment_turn_features_off(monkeypatch, capsys):
    from tap.machine import effective_cpu, isa_cap

    cpu = cpu_info(AMX)
    assert effective_cpu(cpu, {}) == cpu and isa_cap({}) is None
    assert isa_cap({"ONEDNN_MAX_CPU_ISA": "ALL", "ATEN_CPU_CAPABILITY": ""}) is None
    capped = effective_cpu(cpu, {"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert capped.kind == "AVX2" and not capped.native_bf16 and capped.model == cpu.model
    assert effective_cpu(cpu, {"ATEN_CPU_CAPABILITY": "avx2"}).kind == "AVX2"
    assert effective_cpu(cpu, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}).kind == "AVX-512 (no bf16)"
    assert effective_cpu(cpu, {"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}).kind == "AVX-512 + bf16"  # no AMX
    assert isa_cap({"ONEDNN_MAX_CPU_ISA": "AVX2"}) == "ONEDNN_MAX_CPU_ISA=AVX2"
    # dtype auto follows what the kernels can do, not what the CPU has
    monkeypatch.setattr("tap.llm.hf._SAID", set())
    monkeypatch.setattr("tap.llm.hf.cpu_info", lambda: cpu_info(AVX512_BF16))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert "kernels capped: ONEDNN_MAX_CPU_ISA=AVX2" in capsys.readouterr().err
    assert machine_info()["isa_cap"] == "ONEDNN_MAX_CPU_ISA=AVX2"
