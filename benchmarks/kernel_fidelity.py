"""Is one dtype one frozen model? The same chains, on the same val examples, answered by SmolLM2 in one dtype
under different kernel settings of the same CPU: torch's thread count, and oneDNN's instruction set (on a CPU
with AMX, ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` runs bf16 on AVX-512 instead of the AMX tiles).

The call cache keys answers by ``model@dtype`` (``TransformersLLM.name``). If another thread count or kernel
answered differently, a cache filled under one setting would hand those answers to a run under another, and
two fresh runs of the same seed would differ by machine. Each setting runs in its own process with its own
empty call cache (the model copy is shared), so every answer is computed under that setting. Reported per
task against the reference setting (the first): the share of identical answers, both accuracies (paired over
chains), and the chains' ranking agreement next to the reference's own split-half agreement
(``int8_fidelity.compare``).

    python benchmarks/kernel_fidelity.py                # bf16: 2 threads (reference), 1 thread, no AMX; fp32: 2 and 1
    python benchmarks/kernel_fidelity.py --report-only

Results are keyed by setting name and one machine's; measure another CPU with ``--out`` to a new file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from int8_fidelity import answer, compare  # noqa: E402 - benchmarks/ is on the path from here on
from stats import fmt  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "kernel_fidelity.json"
#: generate mode (first_word_letter, sentiment, 1-digit addition) and score mode (word_in_context)
TASKS = ["ii:first_word_letter", "ii:sentiment", "ii:word_in_context", "bigbench:arithmetic/1_digit_addition"]
#: name -> (dtype, torch threads, extra environment)
SETTINGS = {
    "bf16-2t": ("bfloat16", 2, {}),
    "bf16-1t": ("bfloat16", 1, {}),
    "bf16-2t-noamx": ("bfloat16", 2, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}),
    "fp32-2t": ("float32", 2, {}),
    "fp32-1t": ("float32", 1, {}),
}


def run_setting(name: str, tasks: list[str], chains: int, examples: int, seed: int, model: str) -> dict:
    """Answer every task's chains under one setting, in this process (called in a child process)."""
    from tap.llm import load_llm

    dtype, threads, _ = SETTINGS[name]
    llm = load_llm(model, dtype=dtype, threads=threads)
    return {task: {**answer(task, llm, chains, examples, seed), "setting": name, "env": SETTINGS[name][2]}
            for task in tasks}


def report(rows: dict) -> str:
    """Each setting against the reference of its dtype (the first setting of that dtype in ``SETTINGS``)."""
    lines = ["| task | setting | against | chains x examples | identical answers | accuracy (reference) | accuracy | "
             "paired difference over chains | ρ over chains | reference split-half ρ |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    pooled: dict[tuple[str, str], list[dict]] = {}
    refs = {}
    for name, (dtype, _, _) in SETTINGS.items():
        refs.setdefault(dtype, name)
    for name, (dtype, _, _) in SETTINGS.items():
        ref = refs[dtype]
        if name == ref or name not in rows or ref not in rows:
            continue
        for task, r in rows[name].items():
            base = rows[ref].get(task)
            if base is None:
                continue
            c = compare(base, r)
            pooled.setdefault((name, ref), []).append(c)
            n = f"{len(r['chains'])} x {len(r['chains'][0]['correct'])}"
            lines.append(f"| {task} | {name} | {ref} | {n} | {c['identical']:.3f} | "
                         f"{statistics.mean(c['acc_base']):.3f} | {statistics.mean(c['acc_other']):.3f} | "
                         f"{fmt([o - b for b, o in zip(c['acc_base'], c['acc_other'])])} | {c['rho']:.2f} | "
                         f"{c['split_half']:.2f} |")
    for (name, ref), cs in pooled.items():
        lines.append(f"| **mean over {len(cs)} tasks** | {name} | {ref} | | {fmt([c['identical'] for c in cs], 3)} | "
                     f"{fmt([statistics.mean(c['acc_base']) for c in cs])} | "
                     f"{fmt([statistics.mean(c['acc_other']) for c in cs])} | "
                     f"{fmt([statistics.mean(c['acc_other']) - statistics.mean(c['acc_base']) for c in cs])} | "
                     f"{fmt([c['rho'] for c in cs], 2)} | {fmt([c['split_half'] for c in cs], 2)} |")
    machines = {json.dumps(t["machine"]["cpu"]) for r in rows.values() for t in r.values()}
    return "\n".join(lines) + f"\n\nCPU: {', '.join(sorted(machines))}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--chains", type=int, default=12)
    ap.add_argument("--examples", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # one setting, run in its own process
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_setting(args.child, args.tasks, args.chains, args.examples, args.seed, args.model)))
        return 0
    out = Path(args.out)
    if not args.report_only:
        from tap.errors import TaskError
        from tap.paths import cache_dir, update_json
        from tap.tasks import load_tasks

        try:
            load_tasks(args.tasks)
        except TaskError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

        models = cache_dir() / "models"  # the converted weights are shared; the call cache is not
        rows = json.loads(out.read_text()) if out.exists() else {}
        for name in args.settings:
            if name in rows and set(args.tasks) <= set(rows[name]):
                continue
            with tempfile.TemporaryDirectory(prefix="tap-kernel-") as tmp:
                if models.exists():
                    (Path(tmp) / "models").symlink_to(models)
                env = {**os.environ, **SETTINGS[name][2], "TAP_CACHE": tmp}
                cmd = [sys.executable, __file__, "--child", name, "--tasks", *args.tasks, "--chains", str(args.chains),
                       "--examples", str(args.examples), "--seed", str(args.seed), "--model", args.model]
                done = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True)
            update_json(out, name, json.loads(done.stdout.strip().splitlines()[-1]))
    rows = json.loads(out.read_text()) if out.exists() else {}
    print(report(rows) if rows else "no results yet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
