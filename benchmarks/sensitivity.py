"""Sensitivity screen: on which tasks does the chain change what the frozen LLM gets right?

For each task, ``--chains`` chains are evaluated on the same ``--examples`` val examples: the task's
initial chain (its own instruction, or the generic one), the initial chain with 3 train
demonstrations, ``--induced`` instructions induced from train pairs by the frozen LLM (each alone,
``tap.chains.induce``) and random chains of the task's edit space (library or induced instruction and
answer format, 0-3 steps, 0-3 train demonstrations). A task is useful for chain optimisation when the
spread of accuracy across chains clearly exceeds binomial noise and the best chains beat the typical
one. Writes ``benchmarks/results/sensitivity.json`` (resumable, per task) and prints a Markdown table.

    python benchmarks/sensitivity.py --tasks bigbench:navigate bigbench:arithmetic/1_digit_addition
    python benchmarks/sensitivity.py --suite ii       # the 21 shipped instruction-induction tasks
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

from tqdm import tqdm

from tap.chains import Chain, edit_space, initial_chain
from tap.chains.induce import induce_instructions
from tap.env import Environment
from tap.llm import load_llm
from tap.llm.base import GenerationSettings
from tap.machine import machine_info
from tap.paths import update_json
from tap.tasks import load_task
from tap.tasks.instruction_induction import ii_task_names

DEFAULT_TASKS = [
    "bigbench:arithmetic/1_digit_addition", "bigbench:arithmetic/1_digit_subtraction",
    "bigbench:arithmetic/2_digit_addition", "bigbench:object_counting", "bigbench:navigate",
    "bigbench:sports_understanding", "bigbench:causal_judgment", "bigbench:anachronisms",
    "bigbench:implicatures", "bigbench:winowhy", "bigbench:logical_deduction/three_objects",
    "bigbench:date_understanding", "bigbench:emojis_emotion_prediction", "bigbench:hyperbaton",
    "bigbench:general_knowledge", "bigbench:elementary_math_qa", "bigbench:human_organs_senses",
    "bigbench:entailed_polarity",
]


def _majority(task, n: int) -> float:
    """Accuracy of always giving the most common gold answer on the screened examples.

    A chain that only moves the model's label bias can reach this and no more.
    """
    answers = [ex.answer for ex in task.val[:n]]
    return max(answers.count(a) for a in set(answers)) / len(answers)


def screen(task_name: str, llm, n_chains: int, n_examples: int, seed: int, n_induced: int = 0,
           max_new_tokens: int = 32) -> dict:
    task = load_task(task_name, seed=seed)
    env = Environment(llm, task, generation=GenerationSettings(max_new_tokens=max_new_tokens))
    examples = task.val[:n_examples]
    induction = induce_instructions(llm, task, n=n_induced, seed=seed)
    space = edit_space(task, induced=induction.instructions)
    rng = random.Random(f"sensitivity:{task_name}:{seed}")
    start = initial_chain(task.description)
    chains = [start]
    if n_induced:  # the fixed rows: 3 demonstrations, and each induced instruction alone
        chains.append(Chain(start.instruction, demos=tuple(space.demo_pool[:3])))
        chains += [Chain(text) for text in induction.instructions]
    chains += [space.random_chain(rng) for _ in range(n_chains - len(chains))]
    accs, dense, comp = [], [], []
    t0, calls0 = time.time(), llm.calls
    for chain in tqdm(chains, desc=task_name.split(":")[-1], leave=False):
        ev = env.evaluate(chain, examples)
        accs.append(ev.accuracy)
        dense.append(ev.dense)
        comp.append(ev.compliance)
    p = statistics.mean(accs)
    majority = _majority(task, len(examples))
    noise = math.sqrt(max(p * (1 - p), 1e-9) / len(examples))
    spread = statistics.pstdev(accs)
    induced = accs[2 : 2 + len(induction.instructions)] if n_induced else []
    return {
        "task": task_name, "mode": env.mode, "induced": list(induction.instructions),
        "acc_demos3": accs[1] if n_induced else None, "acc_induced": induced,
        "induced_beats_initial": sum(a > accs[0] for a in induced), "induction_costs": induction.costs(),
        "examples": len(examples), "chains": len(chains),
        "majority": majority, "acc_initial": accs[0], "acc_mean": p, "acc_min": min(accs), "acc_max": max(accs),
        "acc_std": spread, "binomial_sd": noise, "spread_ratio": spread / noise,
        "dense_std": statistics.pstdev(dense), "compliance_mean": statistics.mean(comp),
        "llm_calls": llm.calls - calls0, "seconds": time.time() - t0, "accuracies": accs,
        "machine": machine_info(llm.name.rpartition("@")[2] or None),
    }


def usable(r: dict) -> bool:
    """The chain matters on this task, measurably: at least 48 val examples screened, the best chain at
    least 0.25 above the worst, and a spread across chains at least 1.5x the binomial noise.
    """
    return r["examples"] >= 48 and r["acc_max"] - r["acc_min"] >= 0.25 and r["spread_ratio"] >= 1.5


def ii_table(rows: list[dict]) -> str:
    """The instruction-induction screen: generic chain, + 3 demos, induced instructions, random chains."""
    lines = ["| model | task | n | generic | + 3 demos | induced: best (beat generic) | mean | min | max | "
             "spread/noise | compliance | usable |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], -r["spread_ratio"])):
        ind = r["acc_induced"]
        best = f"{max(ind):.2f} ({r['induced_beats_initial']}/{len(ind)})" if ind else "-"
        lines.append(f"| {r['model']} | {r['task']} | {r['examples']} | {r['acc_initial']:.2f} | "
                     f"{r['acc_demos3']:.2f} | {best} | "
                     f"{r['acc_mean']:.2f} | {r['acc_min']:.2f} | {r['acc_max']:.2f} | {r['spread_ratio']:.2f} | "
                     f"{r['compliance_mean']:.2f} | {'yes' if usable(r) else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=None, help="task specs (default: the BIG-bench screen list)")
    ap.add_argument("--suite", choices=["bigbench", "ii"], default="bigbench",
                    help="ii: every shipped instruction-induction task (with --induced 8 and 24 new tokens)")
    ap.add_argument("--induced", type=int, default=None, help="induced instructions per task (default 8 for ii)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 32 (BIG-bench) / 24 (ii)")
    ap.add_argument("--chains", type=int, default=20)
    ap.add_argument("--examples", type=int, default=48)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/sensitivity.json")
    ap.add_argument("--report-only", action="store_true", help="print the table of the results file and stop")
    args = ap.parse_args()
    ii = args.suite == "ii"
    args.tasks = args.tasks or ([f"ii:{n}" for n in ii_task_names()] if ii else DEFAULT_TASKS)
    n_induced = args.induced if args.induced is not None else (8 if ii else 0)
    max_new = args.max_new_tokens or (24 if ii else 32)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(out.read_text()) if out.exists() else {}
    llm = None if args.report_only else load_llm(args.model)
    for name in [] if args.report_only else tqdm(args.tasks, desc="tasks"):
        key = f"{name}|{args.chains}|{args.examples}|{args.seed}|{llm.name}"
        key += f"|induced{n_induced}|tokens{max_new}" if (n_induced or max_new != 32) else ""
        if key not in rows:
            try:
                row = screen(name, llm, args.chains, args.examples, args.seed, n_induced, max_new)
            except Exception as err:  # noqa: BLE001 - one bad task must not stop the screen
                print(f"skip {name}: {err}", file=sys.stderr)
                continue
            rows = update_json(out, key, row)  # keeps rows another run wrote meanwhile
    for r in rows.values():
        if "majority" not in r:  # rows written before the column existed: no LLM call needed
            r["majority"] = _majority(load_task(r["task"], seed=args.seed), r["examples"])
    if ii:
        ii_rows = []
        for key, r in rows.items():
            if r["task"].startswith("ii:") and r.get("acc_demos3") is not None:
                ii_rows.append({**r, "model": key.split("|")[4].split("@")[0]})
        print(ii_table(ii_rows))
        return
    print("| task | mode | n | chains | majority | initial | mean | min | max | std | binomial sd | spread/noise "
          "| usable |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows.values(), key=lambda r: -r["spread_ratio"]):
        if r["task"].startswith("ii:"):
            continue
        print(f"| {r['task']} | {r['mode']} | {r['examples']} | {r['chains']} | {r['majority']:.2f} | "
              f"{r['acc_initial']:.2f} | "
              f"{r['acc_mean']:.2f} | {r['acc_min']:.2f} | {r['acc_max']:.2f} | {r['acc_std']:.3f} | "
              f"{r['binomial_sd']:.3f} | {r['spread_ratio']:.2f} | {'yes' if usable(r) else 'no'} |")


if __name__ == "__main__":
    main()
