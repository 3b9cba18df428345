"""The arithmetic rate of SmolLM2-135M's linear layers per dtype and kernel cap: why a CPU without bf16 stays
slower, whatever runs around the matmuls.

Each setting runs in its own process (the kernel caps are read when the libraries load): the MLP's up
projection (576 -> 1536), the model's most common matmul shape, on a prefill-sized batch (1,024 tokens: 16
prompts of 64) and on one decoding step (16 tokens), timed over repeated calls after a warm-up, in GFLOP/s.
Settings: fp32 and int8 (dynamic, per-channel, as ``tap.llm.hf.quantize_int8``) with the kernels capped at
AVX2 (what an AVX2-only CPU runs); fp32, bf16, and bf16 without AMX (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``)
uncapped. Nothing else may run meanwhile.

    python benchmarks/matmul_rate.py          # about 30 s on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from env_throughput import ISA_CAPS

from tap.machine import machine_info

#: (label, dtype, environment)
SETTINGS = [("fp32, capped at AVX2", "fp32", ISA_CAPS["avx2"]),
            ("int8, capped at AVX2", "int8", ISA_CAPS["avx2"]),
            ("fp32", "fp32", {}),
            ("bf16", "bf16", {}),
            ("bf16 without AMX", "bf16", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"})]
SHAPE = (576, 1536)  # SmolLM2-135M: hidden -> MLP width
TOKENS = {"prefill": 1024, "decode": 16}


def rate(dtype: str, tokens: int, seconds: float = 2.0) -> float:
    """GFLOP/s of one linear layer of ``SHAPE`` on ``tokens`` rows."""
    import torch

    torch.manual_seed(0)
    layer = torch.nn.Linear(*SHAPE, bias=False)
    x = torch.randn(tokens, SHAPE[0])
    if dtype == "bf16":
        layer, x = layer.to(torch.bfloat16), x.to(torch.bfloat16)
    elif dtype == "int8":
        from torch.ao import quantization as Q

        # per-channel weights, as tap.llm.hf.quantize_int8 quantizes the model's layers
        layer = Q.quantize_dynamic(torch.nn.Sequential(layer), {torch.nn.Linear: Q.per_channel_dynamic_qconfig},
                                   dtype=torch.qint8)
    with torch.inference_mode():
        for _ in range(20):
            layer(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            layer(x)
            n += 1
        dt = time.perf_counter() - t0
    return 2 * tokens * SHAPE[0] * SHAPE[1] * n / dt / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one dtype in this process, print JSON
    ap.add_argument("--out", help="also write the rows to this JSON file")
    args = ap.parse_args()
    if args.one:
        print(json.dumps({k: round(rate(args.one, t), 1) for k, t in TOKENS.items()}))
        return
    rows = []
    for label, dtype, caps in SETTINGS:
        env = {**os.environ, **caps}
        proc = subprocess.run([sys.executable, __file__, "--one", dtype], env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"setting {label!r} failed:\n{proc.stderr[-3000:]}")
        rows.append({"setting": label, "dtype": dtype, "env": caps, **json.loads(proc.stdout.strip().splitlines()[-1])})
        print(json.dumps(rows[-1]), file=sys.stderr)
    m = machine_info()
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "machine": m}, f, indent=1)
    print(f"{m['cpu']} ({m['cpu_kind']}), {m['threads']} threads; linear {SHAPE[0]} -> {SHAPE[1]}")
    base = rows[0]
    print("| setting | prefill GFLOP/s (1,024 tokens) | decode GFLOP/s (16 tokens) | x fp32 capped, prefill | decode |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['prefill']} | {r['decode']} | {r['prefill'] / base['prefill']:.2f} | "
              f"{r['decode'] / base['decode']:.2f} |")


if __name__ == "__main__":
    main()
