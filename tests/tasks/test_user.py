import json

import pytest

from tap.errors import TaskError
from tap.tasks import load_task
from tap.tasks.schema import Example
from tap.tasks.user import load_user_task


def _jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_jsonl_exact_match(tmp_path):
    rows = [{"input": f"What is {i} + 1?", "target": str(i + 1)} for i in range(5)]
    task = load_task(_jsonl(tmp_path / "add.jsonl", rows), seed=4)
    assert task.metric == "exact_match"
    assert task.description == ""
    assert task.seed == 4
    assert task.examples == [Example(i, f"What is {i} + 1?", (str(i + 1),)) for i in range(5)]


def test_jsonl_target_lists_json_and_pipe(tmp_path):
    rows = [
        {"input": "a", "target": "2 | two"},
        {"input": "b", "target": '["3", "three"]'},
        {"input": "c", "target": "4"},
    ]
    examples, metric, _ = load_user_task(_jsonl(tmp_path / "t.jsonl", rows))
    assert metric == "exact_match"
    assert [ex.targets for ex in examples] == [("2", "two"), ("3", "three"), ("4",)]


def test_jsonl_native_list_targets(tmp_path):
    rows = [{"input": f"q{i}", "target": [str(i), f"n{i}"]} for i in range(3)]
    examples, _, _ = load_user_task(_jsonl(tmp_path / "t.jsonl", rows))
    assert [ex.targets for ex in examples] == [("0", "n0"), ("1", "n1"), ("2", "n2")]


def test_jsonl_choices_with_text_answer(tmp_path):
    rows = [
        {"input": "Is the sky blue?", "choices": ["yes", "no"], "answer": "yes"},
        {"input": "Is fire cold?", "choices": ["yes", "no"], "answer": "no"},
        {"input": "Colour of grass?", "choices": ["red", "green", "blue"], "answer": "green"},
    ]
    task = load_task(_jsonl(tmp_path / "mc.jsonl", rows))
    assert task.metric == "multiple_choice"
    assert task.examples[2] == Example(2, "Colour of grass?", ("green",), ("red", "green", "blue"), (0.0, 1.0, 0.0))
    assert [ex.answer for ex in task.examples] == ["yes", "no", "green"]


def test_jsonl_choices_with_index_answer(tmp_path):
    rows = [{"input": f"q{i}", "choices": "a|b|c", "answer": str(i)} for i in range(3)]
    examples, metric, _ = load_user_task(_jsonl(tmp_path / "mc.jsonl", rows))
    assert metric == "multiple_choice"
    assert [(ex.choices, ex.scores, ex.answer) for ex in examples] == [
        (("a", "b", "c"), (1.0, 0.0, 0.0), "a"),
        (("a", "b", "c"), (0.0, 1.0, 0.0), "b"),
        (("a", "b", "c"), (0.0, 0.0, 1.0), "c"),
    ]


def test_numeric_choices_answer_is_text_first(tmp_path):
    rows = [{"input": f"q{i}", "choices": ["2", "0", "1"], "answer": "1"} for i in range(3)]
    examples, _, _ = load_user_task(_jsonl(tmp_path / "mc.jsonl", rows))
    assert examples[0].answer == "1"
    assert examples[0].scores == (0.0, 0.0, 1.0)


def test_csv_exact_match_and_pipes(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('input,target\n"What is 2, plus 2?",4|four\nCapital of France?,Paris\nq3,yes\n')
    task = load_task(str(path))
    assert task.metric == "exact_match"
    assert task.examples == [
        Example(0, "What is 2, plus 2?", ("4", "four")),
        Example(1, "Capital of France?", ("Paris",)),
        Example(2, "q3", ("yes",)),
    ]


def test_csv_multiple_choice(tmp_path):
    path = tmp_path / "mc.csv"
    path.write_text('input,choices,answer\nq0,"[""x"", ""y""]",y\nq1,x|y,0\nq2,x|y,x\n')
    examples, metric, _ = load_user_task(path)
    assert metric == "multiple_choice"
    assert [ex.answer for ex in examples] == ["y", "x", "x"]
    assert examples[0].choices == ("x", "y")


def test_json_suffix_is_read_as_json_lines(tmp_path):
    rows = [{"input": f"q{i}", "target": "t"} for i in range(3)]
    examples, _, _ = load_user_task(_jsonl(tmp_path / "t.json", rows))
    assert len(examples) == 3


def test_missing_columns(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", [{"question": "q", "target": "a"}] * 3)
    with pytest.raises(TaskError, match=r"has columns \['question', 'target'\]; it needs 'input'"):
        load_user_task(path)


def test_choices_without_answer_is_missing_columns(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", [{"input": "q", "choices": ["a", "b"]}] * 3)
    with pytest.raises(TaskError, match="'choices' and 'answer'"):
        load_user_task(path)


def test_empty_input_value(tmp_path):
    rows = [{"input": "q", "target": "a"}, {"input": "  ", "target": "b"}, {"input": "r", "target": "c"}]
    with pytest.raises(TaskError, match=r"t.jsonl, row 2: 'input' is empty"):
        load_user_task(_jsonl(tmp_path / "t.jsonl", rows))


def test_empty_target_value(tmp_path):
    rows = [{"input": "q", "target": "a"}, {"input": "r", "target": ""}, {"input": "s", "target": "c"}]
    with pytest.raises(TaskError, match=r"row 2: 'target' is empty"):
        load_user_task(_jsonl(tmp_path / "t.jsonl", rows))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(TaskError, match="empty.jsonl"):
        load_task(str(path))


def test_bad_answer(tmp_path):
    rows = [{"input": "q", "choices": ["a", "b"], "answer": "c"}] * 3
    with pytest.raises(TaskError, match=r"row 1: answer 'c' is neither one of the choices \['a', 'b'\]"):
        load_user_task(_jsonl(tmp_path / "t.jsonl", rows))


def test_answer_index_out_of_range(tmp_path):
    rows = [{"input": "q", "choices": ["a", "b"], "answer": "2"}] * 3
    with pytest.raises(TaskError, match=r"row 1: needs at least 2 choices and a valid answer index \(got 2\)"):
        load_user_task(_jsonl(tmp_path / "t.jsonl", rows))


def test_single_choice_is_rejected(tmp_path):
    rows = [{"input": "q", "choices": ["a"], "answer": "a"}] * 3
    with pytest.raises(TaskError, match="needs at least 2 choices"):
        load_user_task(_jsonl(tmp_path / "t.jsonl", rows))


def test_unknown_extension(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("input,target\nq,a\n")
    with pytest.raises(TaskError, match="unknown task"):
        load_task(str(path))
    with pytest.raises(TaskError, match=r"must end in .jsonl, .json or .csv \(got '.txt'\)"):
        load_user_task(path)


def test_missing_file(tmp_path):
    with pytest.raises(TaskError, match="nope.jsonl does not exist"):
        load_task(str(tmp_path / "nope.jsonl"))


def test_malformed_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "q", "target": "a"}\n{"input": "r", "target": \n{"input": "s", "target": "c"}\n')
    with pytest.raises(TaskError, match=r"bad.jsonl, line 2 is not valid JSON \(Expecting value at column 26\)"):
        load_task(str(path))


@pytest.mark.parametrize("name,content,message", [
    ("latin1.jsonl", b'{"input": "a", "target": "b"}\n{"input": "caf\xe9", "target": "c"}\n',
     r"latin1.jsonl, line 2 is not UTF-8 text \(byte 0xe9 at column 15\). Fix: save the file as UTF-8"),
    ("latin1.csv", b"input,target\ncaf\xe9,c\n", r"latin1.csv, line 2 is not UTF-8 text"),
    ("empty.jsonl", b"", r"empty.jsonl is empty. Fix: give at least 3 rows"),
    ("blank.jsonl", b"\n\n  \n", r"blank.jsonl is empty"),
    ("header.csv", b"input,target\n", r"header.csv has a header but no rows"),
    ("list.jsonl", b'["input", "target"]\n', r"list.jsonl, line 1 is a JSON list, not an object"),
])
def test_damaged_task_files_name_the_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TaskError, match=message):
        load_task(str(path))


def test_csv_values_are_kept_as_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("input,target\nq1,007\nq2,None\nq3,NA\n")
    examples, _, _ = load_user_task(path)
    assert [ex.targets for ex in examples] == [("007",), ("None",), ("NA",)]
