"""Is ``dtype: int8`` as good an environment as fp32? The same chains, on the same val examples, answered
by SmolLM2 in fp32 and in int8: the share of identical answers, each dtype's accuracy (paired difference
over chains), and whether the two rank the chains alike (what a search sees).

Per task: the initial chain, the initial chain with 3 train demonstrations, and random chains of the
task's edit space (library instructions and answer formats, 0-3 steps, 0-3 demonstrations), seeded, so
both dtypes see the same chains. The ranking agreement (Spearman of per-chain accuracy, fp32 against int8)
is shown next to fp32's own split-half agreement (the chains ranked on the odd examples against the even
ones): the ranking differences that one evaluation's sampling noise makes anyway.

``--isa avx2`` reruns the script with every kernel library capped at AVX2 (as on a CPU without AVX-512,
where int8 is the faster path): int8 then runs FBGEMM's AVX2 kernels, another frozen model
(``…@int8-avx2``) than the VNNI kernels'. Resumable (per task and dtype, in the results file); LLM calls
go through the call cache.

    python benchmarks/int8_fidelity.py --isa avx2        # 6 tasks x 16 chains x 32 examples, per dtype
    python benchmarks/int8_fidelity.py --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from stats import fmt  # noqa: E402 - benchmarks/ is on the path from here on

OUT = ROOT / "benchmarks" / "results" / "int8_fidelity.json"
#: the transfer set (never trained or tuned on) and two pool tasks of other kinds
TASKS = ["ii:first_word_letter", "ii:rhymes", "ii:singular_to_plural", "ii:word_in_context", "ii:sentiment",
         "bigbench:arithmetic/1_digit_addition"]


def chains_of(task, n_chains: int, seed: int) -> list:
    """The chains both dtypes answer: initial, initial + 3 train demonstrations, then random chains."""
    from tap.chains import Chain, edit_space, initial_chain

    space = edit_space(task)
    start = initial_chain(task.description)
    rng = random.Random(f"int8_fidelity:{task.name}:{seed}")
    chains = [start, Chain(start.instruction, demos=tuple(space.demo_pool[:3]))]
    return chains + [space.random_chain(rng) for _ in range(n_chains - len(chains))]


def answer(task, llm, n_chains: int, n_examples: int, seed: int) -> dict:
    """Every chain's answers (extracted) and correctness on the first ``n_examples`` val examples of ``task``
    (loaded with ``seed``).
    """
    from tqdm import tqdm

    from tap.env import Environment
    from tap.llm.base import GenerationSettings
    from tap.machine import machine_info

    task_name = task.name
    tokens = 24 if task_name.startswith("ii:") else 32  # as the sensitivity screen
    env = Environment(llm, task, generation=GenerationSettings(max_new_tokens=tokens))
    examples = task.val[:n_examples]
    rows = []
    for chain in tqdm(chains_of(task, n_chains, seed), desc=f"{task_name.split(':')[-1]} {llm.name}", leave=False):
        ev = env.evaluate(chain, examples)
        rows.append({"answers": [r.extracted for r in ev.results], "correct": [bool(r.correct) for r in ev.results]})
    return {"task": task_name, "model": llm.name, "mode": env.mode, "chains": rows,
            "machine": machine_info(llm.name.rpartition("@")[2] or None)}


def compare(base: dict, other: dict) -> dict:
    """How ``other`` (int8) answers the chains of ``base`` (fp32): identical answers, accuracy, ranking
    (Spearman; NaN where a side is constant, which ``fmt`` leaves out of the means).
    """
    from noise_ceiling import spearman

    def rho(x: list[float], y: list[float]) -> float:
        r = spearman(x, y)
        return float("nan") if r is None else r

    same = [x == y for cb, co in zip(base["chains"], other["chains"]) for x, y in zip(cb["answers"], co["answers"])]
    acc_b = [statistics.mean(c["correct"]) for c in base["chains"]]
    acc_o = [statistics.mean(c["correct"]) for c in other["chains"]]
    odd = [statistics.mean(c["correct"][1::2]) for c in base["chains"]]
    even = [statistics.mean(c["correct"][0::2]) for c in base["chains"]]
    best_o = max(range(len(acc_o)), key=acc_o.__getitem__)  # the chain a search on int8 would keep
    return {"identical": statistics.mean(same), "acc_base": acc_b, "acc_other": acc_o,
            "rho": rho(acc_b, acc_o), "split_half": rho(odd, even),
            "regret": max(acc_b) - acc_b[best_o]}  # fp32 accuracy lost by keeping int8's best chain


def report(rows: dict) -> str:
    """One line per (task, int8 variant) against fp32 on the same chains and examples, then the pooled means."""
    lines = ["| task | compared | chains x examples | identical answers | accuracy fp32 | accuracy int8 | "
             "int8 - fp32 (paired over chains) | ρ(fp32, int8) over chains | fp32 split-half ρ | "
             "fp32 regret of int8's best chain |", "|---|---|---|---|---|---|---|---|---|---|"]
    pooled: dict[str, list[dict]] = {}
    for key, r in sorted(rows.items()):
        if "@int8" not in r["model"]:
            continue
        base_key = key.replace(r["model"], r["model"].split("@")[0] + "@float32")
        if base_key not in rows:
            continue
        c = compare(rows[base_key], r)
        pooled.setdefault(r["model"].split("@")[1], []).append(c)
        n = f"{len(r['chains'])} x {len(r['chains'][0]['correct'])}"
        lines.append(f"| {r['task']} | {r['model'].split('@')[1]} vs float32 | {n} | {c['identical']:.2f} | "
                     f"{statistics.mean(c['acc_base']):.3f} | {statistics.mean(c['acc_other']):.3f} | "
                     f"{fmt([o - b for b, o in zip(c['acc_base'], c['acc_other'])])} | {c['rho']:.2f} | "
                     f"{c['split_half']:.2f} | {c['regret']:.3f} |")
    for variant, cs in pooled.items():
        lines.append(f"| **mean over {len(cs)} tasks** | {variant} vs float32 | | "
                     f"{fmt([c['identical'] for c in cs], 2)} | {fmt([statistics.mean(c['acc_base']) for c in cs])} | "
                     f"{fmt([statistics.mean(c['acc_other']) for c in cs])} | "
                     f"{fmt([statistics.mean(c['acc_other']) - statistics.mean(c['acc_base']) for c in cs])} | "
                     f"{fmt([c['rho'] for c in cs], 2)} | {fmt([c['split_half'] for c in cs], 2)} | "
                     f"{fmt([c['regret'] for c in cs])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "int8"], help="fp32 is the reference")
    ap.add_argument("--chains", type=int, default=16)
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--isa", choices=["avx2"], help="cap the kernel libraries at this instruction set (rerun)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    if args.isa and os.environ.get("TAP_ISA_CAP") != args.isa:
        from env_throughput import ISA_CAPS

        env = {**os.environ, **ISA_CAPS[args.isa], "TAP_ISA_CAP": args.isa}
        os.execve(sys.executable, [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])], env)
    out = Path(args.out)
    if not args.report_only:
        from tap.errors import TaskError
        from tap.llm import load_llm
        from tap.paths import update_json
        from tap.tasks import load_tasks

        try:
            tasks = load_tasks(args.tasks, seed=args.seed)  # every task loads before any call is paid
        except TaskError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for dtype in args.dtypes:
            llm = load_llm(args.model, dtype=dtype)
            for task in args.tasks:
                key = f"{task}|{llm.name}|{args.chains}|{args.examples}|{args.seed}"
                rows = json.loads(out.read_text()) if out.exists() else {}
                if key not in rows:
                    update_json(out, key, answer(tasks[task], llm, args.chains, args.examples, args.seed))
    rows = json.loads(out.read_text()) if out.exists() else {}
    print(report(rows) if rows else "no results yet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
