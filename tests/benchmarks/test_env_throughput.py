"""env_throughput.py's pieces that need no model: the candidates' table against the baseline, and the shipped
stand-ins where BIG-bench's source cannot be fetched."""

from __future__ import annotations

import pytest

from tap.errors import TaskError
from tests.helpers import import_benchmark


def _row(candidate: str, mode: str, rate: float, answers: list[str]) -> dict:
    return {"candidate": candidate, "mode": mode, "task": "t", "demos": 3, "model": "m@float32",
            "chain_evals_per_s": rate, "warmup_s": 1.0, "peak_rss_mb": 900, "accuracy": 0.5, "answers": answers}


def test_candidates_are_read_against_the_first_row_of_their_mode():
    bench = import_benchmark("env_throughput")
    rows = [_row("fp32 (baseline)", "score", 0.5, ["a", "b", "c", "d"]),
            _row("faster, same answers", "score", 0.75, ["a", "b", "c", "d"]),
            _row("slower, other answers", "score", 0.25, ["a", "x", "y", "d"]),
            _row("fp32 (baseline)", "generate", 2.0, ["p", "q"]),
            _row("int8", "generate", 3.0, ["p", "r"])]
    table = bench.candidate_table(rows).splitlines()
    assert "| faster, same answers | m@float32 | 0.75 | 1.50 | 1.000 |" in table[3]
    assert "| slower, other answers | m@float32 | 0.25 | 0.50 | 0.500 |" in table[4]
    # the generate rows compare with the generate baseline, not the score one
    assert "| fp32 (baseline) | m@float32 | 2.0 | 1.00 | 1.000 |" in table[5]
    assert "| int8 | m@float32 | 3.0 | 1.50 | 0.500 |" in table[6]


def test_a_missing_bigbench_falls_back_to_shipped_tasks(monkeypatch):
    bench = import_benchmark("env_throughput")
    import tap.tasks

    real = tap.tasks.load_task

    def no_bigbench(name: str, *a, **k):
        if name.startswith("bigbench:"):
            raise TaskError("could not download the BIG-bench source")
        return real(name, *a, **k)

    monkeypatch.setattr(tap.tasks, "load_task", no_bigbench)
    assert bench.pick_task("generate", None).name == "ii:singular_to_plural"
    task = bench.pick_task("score", None)
    assert task.name == "sentiment-choice" and task.metric == "multiple_choice"
    assert {ex.answer for ex in task.val} == {"positive", "negative"}
    assert all(ex.choices == ("positive", "negative") for ex in task.examples)
    # the labels are ii:sentiment's, example by example
    base = real("ii:sentiment")
    assert [ex.answer for ex in task.examples] == [ex.answer for ex in base.examples]
    with pytest.raises(TaskError):  # a task asked for by name is not swapped
        bench.pick_task("score", "bigbench:sports_understanding_typo")
