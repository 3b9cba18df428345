"""int8_fidelity.py's comparison on hand-made answers: identical dtypes agree fully; a dtype that
reverses the chains' order shows it in the ranking and in the regret of its best chain."""

from __future__ import annotations

import pytest

from tests.helpers import import_benchmark


def _row(model: str, correct: list[list[int]]) -> dict:
    return {"task": "ii:rhymes", "model": model,
            "chains": [{"answers": [str(c) + str(i) for i, c in enumerate(cs)], "correct": [bool(c) for c in cs]}
                       for cs in correct]}


def test_identical_answers_agree_fully_and_a_reversed_order_shows():
    fidelity = import_benchmark("int8_fidelity")
    fp32 = [[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]]  # per chain, per example
    same = fidelity.compare(_row("m@float32", fp32), _row("m@int8-avx2", fp32))
    assert same["identical"] == 1.0 and same["rho"] == pytest.approx(1.0, abs=1e-4) and same["regret"] == 0.0
    flipped = fidelity.compare(_row("m@float32", fp32), _row("m@int8-avx2", fp32[::-1]))
    # int8's best chain is fp32's worst
    assert flipped["rho"] == pytest.approx(-1.0, abs=1e-4) and flipped["regret"] == 1.0
    assert abs(flipped["identical"] - 4 / 12) < 1e-9  # only the middle chain's answers coincide
    rows = {"ii:rhymes|m@float32|3|4|0": _row("m@float32", fp32),
            "ii:rhymes|m@int8-avx2|3|4|0": _row("m@int8-avx2", fp32[::-1])}
    table = fidelity.report(rows)
    assert "| ii:rhymes | int8-avx2 vs float32 | 3 x 4 | 0.33 | 0.500 | 0.500 |" in table
    assert "| -1.00 | 1.00 | 1.000 |" in table  # ρ over chains, fp32's split-half ρ, regret
