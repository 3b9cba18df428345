import pytest

from tap.errors import TaskError
from tap.tasks.schema import Example, SplitFractions, Task, task_slug


def _examples(n: int) -> list[Example]:
    return [Example(i, f"q{i}", (str(i),)) for i in range(n)]


def _uids(examples) -> list[int]:
    return [ex.uid for ex in examples]


def test_split_is_deterministic_under_the_same_seed():
    a, b = Task("t", _examples(40), "exact_match", seed=3), Task("t", _examples(40), "exact_match", seed=3)
    assert {s: _uids(v) for s, v in a.splits.items()} == {s: _uids(v) for s, v in b.splits.items()}


def test_split_differs_under_another_seed():
    a, b = Task("t", _examples(40), "exact_match", seed=0), Task("t", _examples(40), "exact_match", seed=1)
    assert _uids(a.train) != _uids(b.train)
    assert set(_uids(a.train)) != set(_uids(b.train))


def test_split_depends_on_the_task_name():
    a, b = Task("t", _examples(40), "exact_match"), Task("u", _examples(40), "exact_match")
    assert _uids(a.train) != _uids(b.train)


def test_split_sizes_disjoint_and_covering():
    task = Task("t", _examples(40), "exact_match")
    assert (len(task.train), len(task.val), len(task.test)) == (8, 12, 20)
    train, val, test = set(_uids(task.train)), set(_uids(task.val)), set(_uids(task.test))
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(40))
    expected = {**dict.fromkeys(train, "train"), **dict.fromkeys(val, "val"), **dict.fromkeys(test, "test")}
    assert task.split_of == expected


def test_split_custom_fractions():
    task = Task("t", _examples(20), "exact_match", fractions=SplitFractions(train=0.5, val=0.25))
    assert (len(task.train), len(task.val), len(task.test)) == (10, 5, 5)


def test_max_examples_keeps_a_seeded_subset():
    full = Task("t", _examples(40), "exact_match", seed=5)
    small = Task("t", _examples(40), "exact_match", seed=5, max_examples=10)
    assert (len(small.train), len(small.val), len(small.test)) == (2, 3, 5)
    kept = _uids(small.train) + _uids(small.val) + _uids(small.test)
    assert len(set(kept)) == 10
    # the subset is the first 10 of the same seeded order as the full task
    order = _uids(full.train) + _uids(full.val) + _uids(full.test)
    assert kept == order[:10]
    assert len(small.split_of) == 10


def test_max_examples_never_below_three():
    task = Task("t", _examples(40), "exact_match", max_examples=1)
    assert (len(task.train), len(task.val), len(task.test)) == (1, 1, 1)


def test_three_examples_one_per_split():
    task = Task("t", _examples(3), "exact_match")
    assert sorted(len(v) for v in task.splits.values()) == [1, 1, 1]


def _check_partition(task: Task, n: int) -> None:
    sets = [set(_uids(v)) for v in task.splits.values()]
    assert all(sets), {s: len(v) for s, v in task.splits.items()}
    assert sum(len(s) for s in sets) == n
    assert set().union(*sets) == set(range(n))


@pytest.mark.parametrize(("n", "train", "val"), [(7, 0.7, 0.2), (5, 0.2, 0.3), (4, 0.5, 0.25), (40, 0.1, 0.1)])
def test_every_split_nonempty_and_disjoint(n, train, val):
    _check_partition(Task("t", _examples(n), "exact_match", fractions=SplitFractions(train=train, val=val)), n)


@pytest.mark.parametrize(("n", "train", "val"), [(3, 0.8, 0.15), (3, 0.9, 0.05), (10, 0.95, 0.04)])
def test_every_split_nonempty_and_disjoint_large_train_fraction(n, train, val):
    _check_partition(Task("t", _examples(n), "exact_match", fractions=SplitFractions(train=train, val=val)), n)


def test_too_few_examples():
    with pytest.raises(TaskError, match="has 2 examples; at least 3"):
        Task("t", _examples(2), "exact_match")


def test_empty_task():
    with pytest.raises(TaskError, match="'t' has no examples"):
        Task("t", [], "exact_match")


@pytest.mark.parametrize(("train", "val"), [(0.0, 0.3), (0.5, 0.5), (0.6, 0.5), (1.0, 0.1), (0.2, 0.0), (-0.1, 0.3)])
def test_bad_split_fractions(train, val):
    with pytest.raises(TaskError, match=f"train={train}, val={val} are invalid"):
        SplitFractions(train=train, val=val)


def test_example_answer_and_correct_choices():
    ex = Example(0, "q", ("b",), ("a", "b", "c"), (0.0, 1.0, 1.0))
    assert ex.answer == "b"
    assert ex.correct_choices() == {1, 2}
    assert Example(1, "q", ("7", "seven")).answer == "7"


def test_fixture_tasks_shape(tiny_task, tiny_mc_task):
    assert len(tiny_task.examples) == 40 and tiny_task.metric == "exact_match"
    assert tiny_task.examples[3] == Example(3, "What is 4 + 9?", ("13",))
    assert len(tiny_mc_task.examples) == 40 and tiny_mc_task.metric == "multiple_choice"
    assert all(ex.choices == ("True", "False") for ex in tiny_mc_task.examples)
    assert {ex.answer for ex in tiny_mc_task.examples} == {"True", "False"}


def test_fixture_task_inputs_are_distinct(tiny_task, tiny_mc_task):
    assert len({ex.input for ex in tiny_task.examples}) == 40
    assert len({ex.input for ex in tiny_mc_task.examples}) == 40


@pytest.mark.parametrize(("spec", "slug"), [
    ("bigbench:arithmetic/1_digit_addition", "arithmetic_1_digit_addition"), ("ii:sentiment", "sentiment"),
    ("ii:translation_en-fr", "translation_en-fr"), ("data/add.jsonl", "add"), ("C:\\tasks\\my task.csv", "my_task"),
    ("bigbench:object_counting", "object_counting")])
def test_task_slug_is_one_short_name_per_spec(spec, slug):
    assert task_slug(spec) == slug
    assert Task(spec, _examples(5), "exact_match").slug == slug


def test_load_tasks_names_every_task_it_cannot_load_before_any_is_used(tmp_path):
    from tap.tasks import load_tasks

    bad = tmp_path / "broken.jsonl"
    bad.write_text("{not json\n")
    tasks = load_tasks(["ii:sentiment", "ii:rhymes"], seed=3)
    assert list(tasks) == ["ii:sentiment", "ii:rhymes"] and tasks["ii:rhymes"].seed == 3
    with pytest.raises(TaskError) as err:
        load_tasks(["ii:sentiment", "nope:x", str(bad)])
    msg = str(err.value)
    assert msg.startswith("2 of the 3 tasks cannot be loaded here")
    assert "- nope:x: unknown task" in msg and f"- {bad}:" in msg and "ii:sentiment" not in msg.split("\n", 1)[1]
    assert "--tasks" in msg
