"""``python -m tap.collect``: collect chain-edit-response triples from the frozen LLM on a task.

Shows progress, caches every LLM call (a second identical run pays 0 calls; a killed run resumes),
and prints as its last line a JSON summary: triples, trajectories, llm_calls (new, uncached),
cache_hits, mean_reward, seconds; the requests that induced instructions are counted apart
(proposer_requests, proposer_llm_calls, proposer_cache_hits).

    python -m tap.collect --task ii:sentiment --trajectories 8 --horizon 6
    python -m tap.collect --config configs/data/ii_pool.yaml [--task ii:sentiment]

With ``--config`` (a data config, as ``train.py --data`` takes), every task of it is collected exactly
as the DataModule would (same settings, same folders), one JSON summary line per task: the way to
collect a task pool ahead of training, or in pieces across sessions. A config that serves several samples
(``samples: [0, 1, 2]``, as the transfer set's does) has each collected, one summary line per task and sample.
``--seed S`` with it collects that one independent sample of the config's tasks (a DataModule with ``seed: S``
or ``S`` among its ``samples`` reads it): ``python -m tap.collect --config configs/data/ii_transfer.yaml --seed 1``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tap.collection.trajectories import CollectionConfig, collect
from tap.errors import TapError, exit_code


def main(argv: list[str] | None = None) -> int:
    from tap.quiet import quiet

    quiet()
    ap = argparse.ArgumentParser(prog="python -m tap.collect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", help="bigbench:NAME, bigbench:parent/subtask, ii:NAME (python -m tap.tasks), or a "
                    ".jsonl/.csv file (with --config: only this task of it)")
    ap.add_argument("--config", help="a data config (configs/data/*.yaml): collect its tasks with its settings "
                    "(the other collection options are then ignored)")
    ap.add_argument("--model", default="smollm2", help="'smollm2' (offline default), a local dir, or a hub id")
    ap.add_argument("--trajectories", type=int, default=8)
    ap.add_argument("--horizon", type=int, default=6, help="edits per trajectory")
    ap.add_argument("--eval-examples", type=int, default=16, help="val examples each chain is evaluated on")
    ap.add_argument("--seed", type=int, default=None,
                    help="collection seed (default 0; with --config, the config's): another seed is an independent "
                         "sample of trajectories and examples, collected into its own folder")
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
    ap.add_argument("--data-dir", default=None, help="where collections live (default: data/, or the config's)")
    ap.add_argument("--cache", default="default", help="call cache file (default: $TAP_CACHE/calls.sqlite)")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    if not args.task and not args.config:
        ap.error("give --task, or --config with a data config")
    try:
        return exit_code(lambda: _collect_config(args) if args.config else _collect_one(args))
    except KeyboardInterrupt:
        print("interrupted: every LLM call paid so far is in the cache; run the same command again to resume.",
              file=sys.stderr)
        return 130


def _collect_one(args: argparse.Namespace) -> int:
    """Collect one task with the options given."""
    from tap.llm import load_llm
    from tap.paths import ensure_writable
    from tap.tasks import load_task

    args.data_dir = args.data_dir or "data"
    seed = 0 if args.seed is None else args.seed
    for name, value in (("trajectories", args.trajectories), ("horizon", args.horizon),
                        ("eval-examples", args.eval_examples)):
        if value < 1:
            raise TapError(f"--{name} must be at least 1 (got {value}).")
    config = CollectionConfig(
        task=args.task, model=args.model, trajectories=args.trajectories, horizon=args.horizon,
        eval_examples=args.eval_examples, seed=seed, mode=args.mode, max_new_tokens=args.max_new_tokens,
        induce=args.induce, proposer=args.proposer, siblings=args.siblings,
        **({"scale_weights": args.scale_weights} if args.scale_weights else {}),
    )
    task = load_task(args.task, seed=seed)  # a bad task fails before any model is loaded
    ensure_writable(args.data_dir, "--data-dir")  # so does an unwritable output folder
    llm = load_llm(args.model, cache=args.cache, dtype=args.dtype, batch_size=args.batch_size)
    proposer = load_llm(args.proposer, cache=args.cache) if args.proposer else None
    summary = collect(config, llm, data_dir=args.data_dir, task=task, proposer=proposer)
    summary["calls_per_second"] = round(summary["llm_calls"] / max(summary["seconds"], 1e-9), 2)
    print(json.dumps(summary))
    return 0


def _collect_config(args: argparse.Namespace) -> int:
    """Collect the tasks of a data config through its DataModule (``prepare_data``), one task at a time."""
    import yaml

    from tap.collection.datamodule import TriplesDataModule
    from tap.paths import ensure_writable

    try:
        data = yaml.safe_load(Path(args.config).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise TapError(f"cannot read the data config {args.config}: {err}") from err
    init = dict(data.get("init_args") or {}) if isinstance(data, dict) else {}
    if not init.get("tasks"):
        raise TapError(f"{args.config} is not a data config with tasks (expected init_args.tasks, as in "
                       "configs/data/ii_pool.yaml).")
    tasks = [args.task] if args.task else list(init["tasks"])
    if args.task and args.task not in init["tasks"]:
        raise TapError(f"{args.task} is not a task of {args.config}; its tasks: {init['tasks']}.")
    init.update(cache=args.cache, **({"data_dir": args.data_dir} if args.data_dir else {}))
    if args.seed is not None:  # this one sample, whatever samples the config serves
        init.update(seed=args.seed, samples=None)
    ensure_writable(init.get("data_dir", "data"), "--data-dir")
    llm = None
    for task in tasks:
        dm = TriplesDataModule(**{**init, "tasks": [task]})
        if llm is not None:
            dm._llm = llm  # one model load for every task
        llm = dm.llm
        for config in dm.configs:  # one per sample the config serves
            done = (dm._dir(config) / "triples").exists()
            if not done:
                collect(config, llm, data_dir=dm.hparams.data_dir)
            meta = json.loads((dm._dir(config) / "meta.json").read_text())
            print(json.dumps({"task": task, "sample": config.seed, "already_collected": done, **meta["summary"]}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
