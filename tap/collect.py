"""``python -m tap.collect``: collect chain-edit-response triples from the frozen LLM on a task.

Shows progress, caches every LLM call (a second identical run pays 0 calls; a killed run resumes),
and prints as its last line a JSON summary: triples, trajectories, llm_calls (new, uncached),
cache_hits, mean_reward, seconds.

    python -m tap.collect --task bigbench:arithmetic/1_digit_addition --trajectories 8 --horizon 6
"""

from __future__ import annotations

import argparse
import json
import sys

from tap.collection.collect import CollectionConfig, collect
from tap.errors import TapError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tap.collect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True,
                    help="bigbench:NAME, bigbench:parent/subtask, ii:NAME (python -m tap.tasks), or a .jsonl/.csv file")
    ap.add_argument("--model", default="smollm2", help="'smollm2' (offline default), a local dir, or a hub id")
    ap.add_argument("--trajectories", type=int, default=8)
    ap.add_argument("--horizon", type=int, default=6, help="edits per trajectory")
    ap.add_argument("--eval-examples", type=int, default=16, help="val examples each chain is evaluated on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=["auto", "generate", "score"], default="auto")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--scale-weights", type=json.loads, default=None,
                    help='JSON, e.g. \'{"instruction": 0.5, "segment": 0.25, "token": 0.25}\'')
    ap.add_argument("--induce", type=int, default=None,
                    help="instructions induced from train pairs for the edit space (default: 8 for a task without "
                         "a description, else 0); proposer requests, reported apart")
    ap.add_argument("--proposer", default=None, help="LLM that induces them (default: the frozen LLM)")
    ap.add_argument("--siblings", type=int, default=0,
                    help="sibling edits evaluated at every visited chain, on its examples (0: one edit per step)")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--cache", default="default", help="call cache file (default: $TAP_CACHE/calls.sqlite)")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    try:
        from tap.llm import load_llm
        from tap.paths import ensure_writable
        from tap.tasks import load_task

        for name, value in (("trajectories", args.trajectories), ("horizon", args.horizon),
                            ("eval-examples", args.eval_examples)):
            if value < 1:
                raise TapError(f"--{name} must be at least 1 (got {value}).")
        config = CollectionConfig(
            task=args.task, model=args.model, trajectories=args.trajectories, horizon=args.horizon,
            eval_examples=args.eval_examples, seed=args.seed, mode=args.mode, max_new_tokens=args.max_new_tokens,
            induce=args.induce, proposer=args.proposer, siblings=args.siblings,
            **({"scale_weights": args.scale_weights} if args.scale_weights else {}),
        )
        task = load_task(args.task, seed=args.seed)  # a bad task fails before any model is loaded
        ensure_writable(args.data_dir, "--data-dir")  # so does an unwritable output folder
        llm = load_llm(args.model, cache=args.cache, dtype=args.dtype, batch_size=args.batch_size)
        proposer = load_llm(args.proposer, cache=args.cache) if args.proposer else None
        summary = collect(config, llm, data_dir=args.data_dir, task=task, proposer=proposer)
    except TapError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: every LLM call paid so far is in the cache; run the same command again to resume.",
              file=sys.stderr)
        return 130
    summary["calls_per_second"] = round(summary["llm_calls"] / max(summary["seconds"], 1e-9), 2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
