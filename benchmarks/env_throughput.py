"""Environment throughput on the default model: chain evaluations and LLM calls per second, in
generation and scoring mode, with 0 and 3 demonstrations, per dtype and path, and peak memory.
Paths: ``naive`` scores every (prompt, continuation) in full; ``shared`` computes the batch's common
prefix (the chain) once and reuses its KV cache (``TransformersLLM.share_prefix``, the default).

Every measurement uses a fresh in-memory call cache (so every call is paid) in its own process
(so peak RSS is per configuration). Do not run anything else on the machine meanwhile.

    python benchmarks/env_throughput.py                # bf16 and fp32, ~4 minutes on 2 cores
    python benchmarks/env_throughput.py --dtypes bf16
    python benchmarks/env_throughput.py --dtypes bf16 --modes score --demos 0 3 8 --paths naive shared
    python benchmarks/env_throughput.py --model qwen2.5-coder-0.5b --dtypes bf16 --modes generate \
        --generate-task ii:singular_to_plural      # the second offline model on an instruction-induction task
    python benchmarks/env_throughput.py --dtypes fp32 int8 bf16 --isa avx2   # as on a CPU without AVX-512

``--isa avx2`` caps every kernel library at AVX2 (``ISA_CAPS``: ATen, oneDNN, MKL, FBGEMM), the closest this
machine comes to a CPU without AVX-512 and bf16; it is recorded in each row (``isa_cap``). Each row also
gives the accuracy of its chains (mean over them): a dtype that changes the model's outputs changes it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from tap.machine import machine_info

#: environment that caps each kernel library at an instruction set (``--isa``)
ISA_CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                     "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}}
TASKS = {"generate": "bigbench:arithmetic/1_digit_addition", "score": "bigbench:sports_understanding"}


def measure(mode: str, dtype: str, demos: int, chains: int, examples: int, batch_size: int,
            path: str = "shared", model: str = "smollm2", task_name: str | None = None) -> dict:
    import random

    from tap.chains import AnswerFormat, Chain, Demo
    from tap.env import Environment
    from tap.llm import load_llm
    from tap.tasks import load_task

    task = load_task(task_name or TASKS[mode])
    llm = load_llm(model, cache=None, dtype=dtype, batch_size=batch_size)
    llm.llm.share_prefix = path == "shared"
    env = Environment(llm, task)
    rng = random.Random(0)
    pool = [Demo(ex.uid, ex.input, ex.answer) for ex in task.train]
    fmt = AnswerFormat("End your reply with 'Answer: <answer>'.", "Answer: {answer}")
    chain_list = [Chain(f"{task.description or 'Respond to the input.'} (variant {i})", fmt,
                        demos=tuple(rng.sample(pool, demos)))
                  for i in range(chains + 1)]
    env.evaluate(chain_list[0], task.val[:4])  # warm-up: weights load, first-call overheads
    calls0, t0 = llm.calls, time.perf_counter()
    accuracy = [env.evaluate(chain, task.val[:examples]).accuracy for chain in chain_list[1:]]
    dt = time.perf_counter() - t0
    calls = llm.calls - calls0
    return {"mode": mode, "task": task.name, "model": llm.name, "dtype": dtype, "demos": demos, "path": path,
            "examples": examples,
            "chain_evals_per_s": round(chains / dt, 3), "llm_calls_per_s": round(calls / dt, 2),
            "calls_per_chain": calls / chains, "seconds": round(dt, 1),
            "accuracy": round(sum(accuracy) / len(accuracy), 4), "isa_cap": os.environ.get("TAP_ISA_CAP", "none"),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "machine": machine_info(llm.name.rpartition("@")[2] or None)}  # the name ends in @<precision>


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--modes", nargs="+", default=["generate", "score"])
    ap.add_argument("--paths", nargs="+", default=["shared"], help="naive and/or shared (see above)")
    ap.add_argument("--demos", nargs="+", type=int, default=[0, 3])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="smollm2", help="smollm2, qwen2.5-coder-0.5b, a local dir or a hub id")
    ap.add_argument("--generate-task", default=TASKS["generate"], help="the task measured in generate mode")
    ap.add_argument("--isa", choices=sorted(ISA_CAPS), help="cap the kernels at this instruction set (see above)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = ap.parse_args()
    if args.one:
        mode, dtype, demos, path = args.one.split(",")
        task = args.generate_task if mode == "generate" else TASKS[mode]
        print(json.dumps(measure(mode, dtype, int(demos), args.chains, args.examples, args.batch_size, path,
                                 args.model, task)))
        return
    rows = []
    for mode in args.modes:
        for dtype in args.dtypes:
            for demos in args.demos:
                for path in args.paths:
                    cmd = [sys.executable, __file__, "--one", f"{mode},{dtype},{demos},{path}", "--chains",
                           str(args.chains), "--examples", str(args.examples), "--batch-size", str(args.batch_size),
                           "--model", args.model, "--generate-task", args.generate_task]
                    env = {**os.environ, **ISA_CAPS.get(args.isa, {}), "TAP_ISA_CAP": args.isa or "none"}
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
                    rows.append(json.loads(out.strip().splitlines()[-1]))
                    print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"ISA cap: {args.isa or 'none'}; {rows[0]['machine']['cpu']}" if rows else "no rows")
    print("| model | task | mode | dtype | demos | path | chain evals/s | LLM calls/s | calls/chain | peak RSS MB | "
          "accuracy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['task']} | {r['mode']} | {r['dtype']} | {r['demos']} | {r['path']} | "
              f"{r['chain_evals_per_s']} | "
              f"{r['llm_calls_per_s']} | {r['calls_per_chain']:.0f} | {r['peak_rss_mb']} | {r['accuracy']:.3f} |")


if __name__ == "__main__":
    main()
