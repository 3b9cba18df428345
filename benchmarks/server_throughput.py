"""Chain evaluations per second: llama.cpp's server (``--model openai:...``) against the local transformers
path, on the same CPU, the same task, chains and prompts (the server gets SmolLM2's chat template too).

Each path evaluates ``--chains`` distinct chains on ``--examples`` examples in generate mode with the dense
gold-answer score (two LLM calls per example), behind a fresh in-memory call cache (every call is paid).
The server runs on loopback with ``--threads`` threads, the local model with as many torch threads.
Rows also give the share of replies identical across the two paths (llama.cpp runs the Q4_1 weights as
they are; transformers runs them dequantized to bf16, so answers may differ).

    python benchmarks/server_throughput.py                       # ~3 minutes on 2 cores
    python benchmarks/server_throughput.py --chains 4 --concurrency 1 8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from tap.chains import Chain, initial_chain
from tap.env import Environment
from tap.llm import load_llm
from tap.llm.provision import provision_offline
from tap.llm.server import LlamaServer
from tap.machine import machine_info
from tap.tasks import load_task


def run(env: Environment, chains: list[Chain], n: int) -> tuple[float, list[str], float]:
    """Seconds to evaluate every chain on the first ``n`` search examples, the replies, the mean accuracy,
    after a warm-up evaluation (not timed) on two other examples.
    """
    env.evaluate(chains[0], env.order[n:n + 2])
    examples = env.order[:n]
    start = time.perf_counter()
    evals = [env.evaluate(c, examples) for c in chains]
    seconds = time.perf_counter() - start
    return seconds, [r.response for e in evals for r in e.results], sum(e.accuracy for e in evals) / len(evals)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="ii:singular_to_plural")
    p.add_argument("--chains", type=int, default=6)
    p.add_argument("--examples", type=int, default=8)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="server requests in flight")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args()
    task = load_task(args.task)
    base = initial_chain(task.description)  # what a search starts from
    chains = [dataclasses.replace(base, instruction=f"{base.instruction} (Variant {i}.)") for i in range(args.chains)]
    calls = 2 * args.chains * args.examples
    rows = []

    env = Environment(load_llm("smollm2", cache=None, threads=args.threads), task)
    seconds, local_replies, acc = run(env, chains, args.examples)
    rows.append({"path": "local transformers (bf16)", "threads": args.threads, "seconds": round(seconds, 2),
                 "chain_evals_per_s": round(args.chains / seconds, 3), "calls_per_s": round(calls / seconds, 2),
                 "accuracy": round(acc, 3), "same_replies": 1.0})
    print(json.dumps(rows[-1]), flush=True)

    tokenizer = str(provision_offline("smollm2"))  # the same chat template as the local path
    with LlamaServer("smollm2", threads=args.threads) as srv:
        for conc in args.concurrency:
            env = Environment(load_llm(srv.spec, cache=None, tokenizer=tokenizer, max_concurrency=conc), task)
            seconds, replies, acc = run(env, chains, args.examples)
            same = sum(a == b for a, b in zip(replies, local_replies)) / len(replies)
            rows.append({"path": f"llama.cpp server (Q4_1), concurrency {conc}", "threads": args.threads,
                         "seconds": round(seconds, 2), "chain_evals_per_s": round(args.chains / seconds, 3),
                         "calls_per_s": round(calls / seconds, 2), "accuracy": round(acc, 3),
                         "same_replies": round(same, 3)})
            print(json.dumps(rows[-1]), flush=True)
    report = {"task": task.name, "chains": args.chains, "examples": args.examples, "machine": machine_info(),
              "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    print(f"{len(rows)} rows; calls per path: {calls}", file=sys.stderr)


if __name__ == "__main__":
    main()
