"""``python -m tap.tasks``: list BIG-bench task names (``python -m tap.tasks NAME`` shows one task)."""

import sys

from tap.tasks import load_task
from tap.tasks.bigbench import task_names

if __name__ == "__main__":
    if len(sys.argv) > 1:
        task = load_task(sys.argv[1])
        sizes = {s: len(v) for s, v in task.splits.items()}
        print(f"{task.name}: metric={task.metric} examples={len(task.examples)} splits={sizes}")
        print(f"instruction: {task.description!r}")
        print(f"first example: {task.examples[0]}")
    else:
        print("\n".join(f"bigbench:{n}" for n in task_names()))
