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
    python benchmarks/env_throughput.py --isa avx2 --demos 3 --candidates    # every fp32 speed-up candidate

``--isa avx2`` caps every kernel library at AVX2 (``ISA_CAPS``: ATen, oneDNN, MKL, FBGEMM), the closest this
machine comes to a CPU without AVX-512 and bf16; it is recorded in each row (``isa_cap``). Each row also
gives the accuracy of its chains (mean over them): a dtype that changes the model's outputs changes it.
``--candidates`` measures the ways to run fp32 faster (``CANDIDATES``: ``torch.compile``, batch size,
threads, fp16, int8) against the fp32 baseline, and reports the share of each one's answers identical to
the baseline's (1.000: the same frozen model) and its one-time cost (the warm-up, which includes compiling).

The default tasks come from BIG-bench; where its source cannot be fetched (some registries no longer serve
it) the shipped stand-ins run instead (``FALLBACK``: ``ii:singular_to_plural``, and ``ii:sentiment`` answered
as a choice between its two labels), and each row names the task it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from tap.machine import machine_info

#: environment that caps each kernel library at an instruction set (``--isa``)
ISA_CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                     "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}}
TASKS = {"generate": "bigbench:arithmetic/1_digit_addition", "score": "bigbench:sports_understanding"}
#: shipped tasks used where BIG-bench's source is unavailable (``sentiment-choice``: see ``sentiment_choice``)
FALLBACK = {"generate": "ii:singular_to_plural", "score": "sentiment-choice"}
#: ``--candidates``: (label, dtype, path, batch size, threads: None for the default, every core or $TAP_THREADS);
#: ``compiled`` is the shared path under torch.compile
CANDIDATES = [("fp32 (baseline)", "fp32", "shared", 16, None), ("torch.compile", "fp32", "compiled", 16, None),
              ("batch 8", "fp32", "shared", 8, None), ("batch 32", "fp32", "shared", 32, None),
              ("1 thread", "fp32", "shared", 16, 1), ("fp16", "fp16", "shared", 16, None),
              ("int8", "int8", "shared", 16, None)]


def sentiment_choice():
    """``ii:sentiment`` as a multiple-choice task (options ``positive`` / ``negative``): a score-mode task
    that ships with TaP.
    """
    from tap.tasks import load_task
    from tap.tasks.schema import Example, Task

    base = load_task("ii:sentiment")
    labels = ("positive", "negative")
    examples = [Example(ex.uid, ex.input, choices=labels, scores=tuple(float(ex.answer == c) for c in labels))
                for ex in base.examples]
    return Task("sentiment-choice", examples, "multiple_choice", seed=base.seed, fractions=base.fractions)


def pick_task(mode: str, name: str | None):
    """The task a mode runs on: ``name``, else the BIG-bench default, else its shipped stand-in."""
    from tap.errors import TaskError
    from tap.tasks import load_task

    name = name or TASKS[mode]
    if name == "sentiment-choice":
        return sentiment_choice()
    try:
        return load_task(name)
    except TaskError as err:
        if name != TASKS[mode]:
            raise
        print(f"[env_throughput] {name} unavailable ({str(err).splitlines()[0][:80]}...); "
              f"measuring {mode} mode on {FALLBACK[mode]} instead", file=sys.stderr)
        return pick_task(mode, FALLBACK[mode])


def measure(mode: str, dtype: str, demos: int, chains: int, examples: int, batch_size: int,
            path: str = "shared", model: str = "smollm2", task_name: str | None = None) -> dict:
    import random

    from tap.chains import AnswerFormat, Chain, Demo
    from tap.env import Environment
    from tap.llm import load_llm

    task = pick_task(mode, task_name)
    llm = load_llm(model, cache=None, dtype=dtype, batch_size=batch_size)
    llm.llm.share_prefix = path in ("shared", "compiled")
    if path == "compiled":  # inductor compiles the decoder on its first calls (the warm-up pays it)
        import torch

        llm.llm.model  # noqa: B018  (loads the weights, so that the decoder exists)
        llm.llm.body = torch.compile(llm.llm.body, dynamic=True)
    env = Environment(llm, task)
    rng = random.Random(0)
    pool = [Demo(ex.uid, ex.input, ex.answer) for ex in task.train]
    fmt = AnswerFormat("End your reply with 'Answer: <answer>'.", "Answer: {answer}")
    chain_list = [Chain(f"{task.description or 'Respond to the input.'} (variant {i})", fmt,
                        demos=tuple(rng.sample(pool, demos)))
                  for i in range(chains + 1)]
    t0 = time.perf_counter()
    env.evaluate(chain_list[0], task.val[:4])  # warm-up: weights load, first-call overheads, compiling
    warmup = time.perf_counter() - t0
    calls0, t0 = llm.calls, time.perf_counter()
    evals = [env.evaluate(chain, task.val[:examples]) for chain in chain_list[1:]]
    dt = time.perf_counter() - t0
    accuracy = [e.accuracy for e in evals]
    calls = llm.calls - calls0
    return {"mode": mode, "task": task.name, "model": llm.name, "dtype": dtype, "demos": demos, "path": path,
            "examples": examples,
            "chain_evals_per_s": round(chains / dt, 3), "llm_calls_per_s": round(calls / dt, 2),
            "calls_per_chain": calls / chains, "seconds": round(dt, 1), "warmup_s": round(warmup, 1),
            "batch_size": batch_size, "answers": [r.response for e in evals for r in e.results],
            "accuracy": round(sum(accuracy) / len(accuracy), 4), "isa_cap": os.environ.get("TAP_ISA_CAP", "none"),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "machine": machine_info(llm.name.rpartition("@")[2] or None)}  # the name ends in @<precision>


def run_one(mode: str, dtype: str, demos: int, path: str, batch_size: int, args: argparse.Namespace,
            threads: int | None = None) -> dict:
    """One configuration in its own process (so peak RSS is its own), with the ISA cap in its environment."""
    task = args.generate_task if mode == "generate" else args.score_task
    cmd = [sys.executable, __file__, "--one", f"{mode},{dtype},{demos},{path}", "--chains", str(args.chains),
           "--examples", str(args.examples), "--batch-size", str(batch_size), "--model", args.model]
    cmd += [f"--{mode}-task", task] if task else []
    env = {**os.environ, **ISA_CAPS.get(args.isa, {}), "TAP_ISA_CAP": args.isa or "none"}
    if threads:
        env["TAP_THREADS"] = str(threads)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"configuration {mode},{dtype},{demos},{path} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in row.items() if k not in ("answers", "machine")}), file=sys.stderr)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--modes", nargs="+", default=["generate", "score"])
    ap.add_argument("--paths", nargs="+", default=["shared"], help="naive, shared and/or compiled (see above)")
    ap.add_argument("--demos", nargs="+", type=int, default=[0, 3])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="smollm2", help="smollm2, qwen2.5-coder-0.5b, a local dir or a hub id")
    ap.add_argument("--generate-task", help=f"the task measured in generate mode (default {TASKS['generate']})")
    ap.add_argument("--score-task", help=f"the task measured in score mode (default {TASKS['score']}; "
                                         "sentiment-choice: the shipped stand-in)")
    ap.add_argument("--isa", choices=sorted(ISA_CAPS), help="cap the kernels at this instruction set (see above)")
    ap.add_argument("--candidates", action="store_true",
                    help="measure CANDIDATES (fp32 speed-ups) instead of --dtypes x --paths")
    ap.add_argument("--out", help="also write the rows (answers included) to this JSON file")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = ap.parse_args()
    if args.one:
        mode, dtype, demos, path = args.one.split(",")
        task = args.generate_task if mode == "generate" else args.score_task
        print(json.dumps(measure(mode, dtype, int(demos), args.chains, args.examples, args.batch_size, path,
                                 args.model, task)))
        return
    rows = []
    for mode in tqdm(args.modes, desc="modes"):
        for demos in args.demos:
            if args.candidates:
                for label, dtype, path, batch_size, threads in CANDIDATES:
                    rows.append({"candidate": label, **run_one(mode, dtype, demos, path, batch_size, args, threads)})
                continue
            for dtype in args.dtypes:
                for path in args.paths:
                    rows.append(run_one(mode, dtype, demos, path, args.batch_size, args))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    if not rows:
        print("no rows")
        return
    m = rows[0]["machine"]
    print(f"ISA cap: {args.isa or 'none'}; {m['cpu']} ({m['cpu_kind']}), {m['threads']} threads")
    if args.candidates:
        print(candidate_table(rows))
        return
    print("| model | task | mode | dtype | demos | path | chain evals/s | LLM calls/s | calls/chain | peak RSS MB | "
          "accuracy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['task']} | {r['mode']} | {r['dtype']} | {r['demos']} | {r['path']} | "
              f"{r['chain_evals_per_s']} | "
              f"{r['llm_calls_per_s']} | {r['calls_per_chain']:.0f} | {r['peak_rss_mb']} | {r['accuracy']:.3f} |")


def candidate_table(rows: list[dict]) -> str:
    """``--candidates`` rows against the first candidate of the same mode and demonstrations: speed ratio,
    share of identical answers (1.000: the same frozen model), one-time cost (warm-up).
    """
    lines = ["| mode | task | demos | candidate | model | chain evals/s | x baseline | identical answers | "
             "warm-up s | peak RSS MB | accuracy |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    base: dict = {}
    for r in rows:
        b = base.setdefault((r["mode"], r["demos"]), r)
        same = sum(x == y for x, y in zip(r["answers"], b["answers"])) / max(1, len(b["answers"]))
        lines.append(f"| {r['mode']} | {r['task']} | {r['demos']} | {r['candidate']} | {r['model']} | "
                     f"{r['chain_evals_per_s']} | {r['chain_evals_per_s'] / b['chain_evals_per_s']:.2f} | "
                     f"{same:.3f} | {r['warmup_s']} | {r['peak_rss_mb']} | {r['accuracy']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
