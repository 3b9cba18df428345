"""``python -m tap.tasks``: list the shipped instruction-induction tasks and the BIG-bench tasks
(``python -m tap.tasks NAME`` shows one task; ``--source ii`` or ``--source bigbench`` lists one source).
"""

import argparse
import sys

from tap.errors import TaskError, exit_code
from tap.tasks import load_task
from tap.tasks.instruction_induction import ii_task_names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tap.tasks", description=__doc__)
    ap.add_argument("task", nargs="?", help="show one task (e.g. ii:sentiment, bigbench:navigate)")
    ap.add_argument("--source", choices=["all", "ii", "bigbench"], default="all")
    args = ap.parse_args(argv)
    return exit_code(lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    """Show one task, or list a source's task names."""
    if args.task:
        task = load_task(args.task)
        sizes = {s: len(v) for s, v in task.splits.items()}
        print(f"{task.name}: metric={task.metric} match={task.match} examples={len(task.examples)} splits={sizes}")
        generic = "" if task.description else " (starts from the generic chain)"
        print(f"instruction: {task.description!r}{generic}")
        print(f"first example: {task.examples[0]}")
        return
    if args.source in ("all", "ii"):
        print("# instruction-induction tasks (shipped with the package; no description: generic chain)")
        print("\n".join(f"ii:{n}" for n in ii_task_names()))
    if args.source in ("all", "bigbench"):
        from tap.tasks.bigbench import task_names

        try:
            names = task_names()
        except TaskError as err:
            if args.source == "bigbench":
                raise
            # listing everything: the shipped tasks above stay usable without the BIG-bench source
            print(f"# BIG-bench tasks unavailable here: {err}", file=sys.stderr)
            return
        print("# BIG-bench JSON tasks and subtasks (bigbench==1.0.0 source, fetched once)")
        print("\n".join(f"bigbench:{n}" for n in names))


if __name__ == "__main__":
    sys.exit(main())
