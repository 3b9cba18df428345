import io
import json
import subprocess
import tarfile

import pytest

from tap import paths
from tap.errors import TaskError
from tap.tasks import bigbench, load_task
from tap.tasks.schema import Example

PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"

ADD = {
    "name": "add",
    "description": "Add two numbers.",
    "task_prefix": "  Add the numbers.\n",
    "metrics": ["exact_str_match"],
    "preferred_score": "exact_str_match",
    "examples": [{"input": f"{a} + {a + 1} =", "target": str(2 * a + 1)} for a in range(5)],
}
SUB = {
    "name": "sub",
    "description": "Subtract.",
    "metrics": ["exact_str_match"],
    "examples": [{"input": f"{a + 3} - 3 =", "target": [str(a)]} for a in range(4)],
}
COUNTING = {
    "name": "object_counting",
    "description": "Count the objects.",
    "metrics": ["exact_str_match"],
    "examples": [
        {"input": "I have a cat and a dog. How many animals?", "target": ["2", "two"]},
        {"input": "I have a pen. How many objects?", "target": ["1", "one"]},
        {"input": "I have three pens. How many objects?", "target": ["3", "three"]},
    ],
}
PLAUSIBLE = {
    "name": "plausibility",
    "description": "Is the sentence plausible?",
    "prefix": "Decide.",
    "metrics": ["multiple_choice_grade"],
    "preferred_score": "multiple_choice_grade",
    "examples": [
        {"input": "A fish climbs a tree.", "target_scores": {"plausible": 0, "implausible": 1}},
        {"input": "A dog barks.", "target_scores": {"plausible": 1, "implausible": 0}},
        {"input": "A stone sings.", "target_scores": {"plausible": 0, "implausible": 1}},
    ],
}
BOTH = [
    {"input": f"q{i}", "target": "yes" if i % 2 else "no", "target_scores": {"yes": i % 2, "no": 1 - i % 2}}
    for i in range(3)
]
TASKS = {
    "arith": {"name": "arith", "description": "Arithmetic, in subtasks.", "metrics": ["exact_str_match"]},
    "arith/add": ADD,
    "arith/sub": SUB,
    "object_counting": COUNTING,
    "plausibility": PLAUSIBLE,
    "both_exact": {"metrics": ["exact_str_match", "multiple_choice_grade"], "preferred_score": "exact_str_match",
                   "examples": BOTH},
    "both_mc": {"metrics": ["exact_str_match", "multiple_choice_grade"], "preferred_score": "multiple_choice_grade",
                "examples": BOTH},
    "scores_only": {"metrics": ["multiple_choice_grade"], "examples": [
        {"input": f"q{i}", "target_scores": {"a": 1, "b": 0}} for i in range(3)]},
    "targets_no_exact_metric": {"metrics": ["bleu"], "examples": [{"input": f"q{i}", "target": "x"} for i in range(3)]},
    "neither": {"metrics": ["exact_str_match"], "examples": [{"input": "q", "target": "a"}, {"input": "r"},
                                                              {"input": "s", "target": "c"}]},
    "programmatic_json": {"description": "no JSON examples here", "examples": []},
}


def _write_sdist(root, tasks: dict[str, dict]) -> None:
    folder = root / "bigbench"
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "bigbench-1.0.0.tar.gz", "w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("bigbench-1.0.0/setup.py", b"# not a task\n")
        add(PREFIX + "README.md", b"# tasks\n")
        add(PREFIX + "programmatic_only/task.py", b"# a programmatic task has no task.json\n")
        for name, task in tasks.items():
            add(f"{PREFIX}{name}/task.json", json.dumps(task).encode())
            add(f"{PREFIX}{name}/README.md", b"about this task\n")


@pytest.fixture(autouse=True)
def sdist(tap_cache, monkeypatch):
    """A tiny fake BIG-bench sdist in the cache, and a guard that pip (the download) is never run."""
    _write_sdist(tap_cache, TASKS)

    def no_download(*args, **kwargs):
        raise AssertionError(f"BIG-bench download attempted: {args}")

    monkeypatch.setattr(paths.subprocess, "run", no_download)
    return tap_cache / "bigbench" / "bigbench-1.0.0.tar.gz"


def test_task_names_lists_every_task_json_sorted(sdist):
    assert bigbench.task_names() == sorted(TASKS)
    assert json.loads((sdist.parent / "index.json").read_text()) == sorted(TASKS)


def test_load_exact_match_task():
    task = load_task("bigbench:arith/add", seed=2)
    assert task.name == "bigbench:arith/add"
    assert task.metric == "exact_match"
    assert task.description == "Add the numbers."
    assert task.seed == 2
    assert task.examples == [Example(a, f"{a} + {a + 1} =", (str(2 * a + 1),)) for a in range(5)]
    assert sorted(task.split_of) == list(range(5))


def test_target_list_and_description_as_instruction():
    task = load_task("bigbench:object_counting")
    assert task.metric == "exact_match"
    assert task.description == "Count the objects."
    assert task.examples[0] == Example(0, "I have a cat and a dog. How many animals?", ("2", "two"))


def test_load_multiple_choice_task():
    task = load_task("bigbench:plausibility")
    assert task.metric == "multiple_choice"
    assert task.description == "Decide."
    assert task.examples[0] == Example(0, "A fish climbs a tree.", (), ("plausible", "implausible"), (0.0, 1.0))
    assert [ex.answer for ex in task.examples] == ["implausible", "plausible", "implausible"]


def test_subtask_by_parent_slash_sub_and_trailing_slash():
    task = load_task("bigbench:arith/sub/")
    assert task.examples[1] == Example(1, "4 - 3 =", ("1",))


def test_parent_task_error_lists_its_subtasks():
    with pytest.raises(TaskError) as err:
        load_task("bigbench:arith")
    assert "'arith' is split into subtasks" in str(err.value)
    assert "bigbench:arith/add, bigbench:arith/sub" in str(err.value)


def test_task_without_examples_or_subtasks():
    with pytest.raises(TaskError, match="'programmatic_json' has no JSON examples"):
        load_task("bigbench:programmatic_json")


def test_unknown_name_suggests_close_names():
    with pytest.raises(TaskError) as err:
        load_task("bigbench:object_countin")
    msg = str(err.value)
    assert "unknown BIG-bench task 'object_countin'" in msg
    assert "Did you mean: object_counting?" in msg
    assert f"lists all {len(TASKS)} names" in msg


def test_unknown_name_without_close_match_has_no_suggestion():
    with pytest.raises(TaskError) as err:
        load_task("bigbench:zzzzzzzzzzzzzzzz")
    assert "Did you mean" not in str(err.value)


def test_programmatic_task_without_task_json_is_unknown():
    with pytest.raises(TaskError, match="unknown BIG-bench task 'programmatic_only'"):
        load_task("bigbench:programmatic_only")


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("both_exact", "exact_match"),
        ("both_mc", "multiple_choice"),
        ("scores_only", "multiple_choice"),
        ("targets_no_exact_metric", "exact_match"),
    ],
)
def test_metric_detection(name, metric):
    task = load_task(f"bigbench:{name}")
    assert task.metric == metric
    if metric == "multiple_choice":
        assert all(len(ex.choices) == 2 and len(ex.scores) == 2 for ex in task.examples)
    else:
        assert all(ex.choices == () and ex.targets for ex in task.examples)


def test_both_kinds_keep_targets_in_multiple_choice():
    task = load_task("bigbench:both_mc")
    assert task.examples[1] == Example(1, "q1", ("yes",), ("yes", "no"), (1.0, 0.0))


def test_examples_without_targets_or_scores():
    with pytest.raises(TaskError, match="'neither' has neither targets nor target_scores"):
        load_task("bigbench:neither")


def test_extracted_task_is_reused_without_the_sdist(sdist):
    first = load_task("bigbench:arith/add")
    assert (sdist.parent / "tasks" / "arith" / "add" / "task.json").exists()
    sdist.unlink()  # a second load must not need the archive (and must not download)
    assert load_task("bigbench:arith/add").examples == first.examples


def test_corrupt_extracted_task_json(sdist):
    target = sdist.parent / "tasks" / "object_counting" / "task.json"
    target.parent.mkdir(parents=True)
    target.write_text("{not json")
    with pytest.raises(TaskError, match="task.json is not valid JSON"):
        load_task("bigbench:object_counting")


def test_failed_download_explains_the_fix(sdist, monkeypatch):
    sdist.unlink()
    calls = []

    def failing_pip(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: no network")

    monkeypatch.setattr(paths.subprocess, "run", failing_pip)
    with pytest.raises(TaskError) as err:
        load_task("bigbench:object_counting")
    assert "could not download the BIG-bench source" in str(err.value) and "bigbench==1.0.0" in str(err.value)
    assert "ERROR: no network" in str(err.value)
    assert "bigbench==1.0.0" in calls[0] and "download" in calls[0]


def test_max_examples_and_seed_pass_through():
    task = load_task("bigbench:arith/add", seed=1, max_examples=3)
    assert sum(len(v) for v in task.splits.values()) == 3
    again = load_task("bigbench:arith/add", seed=1, max_examples=3)
    assert [e.uid for e in task.train] == [e.uid for e in again.train]


def test_unknown_spec():
    with pytest.raises(TaskError, match="unknown task 'object_counting'"):
        load_task("object_counting")
