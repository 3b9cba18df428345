"""grid_check.py on hand-made runs: the accuracy held at a budget, the runs that moved after it, and the
budget-prefix check against another folder (equal where the curves agree, reported where they do not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import import_benchmark


def _write(folder: Path, method: str, seed: int, curve: list[tuple[int, float]]) -> None:
    run = {"task": "ii:rhymes", "method": method, "seed": seed, "budget": curve[-1][0],
           "budgets": [b for b, _ in curve], "curve": [{"budget": b, "test": t} for b, t in curve]}
    (folder / "rhymes").mkdir(parents=True, exist_ok=True)
    (folder / "rhymes" / f"{method}-s{seed}.json").write_text(json.dumps(run))


def test_held_accuracy_moves_and_prefix(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    grid = import_benchmark("grid_check")
    long, short = tmp_path / "long", tmp_path / "short"
    _write(long, "m", 0, [(128, 0.2), (256, 0.5), (512, 0.5), (1024, 0.7)])
    _write(long, "m", 1, [(128, 0.3), (256, 0.6), (512, 0.6), (1024, 0.6)])
    _write(short, "m", 0, [(128, 0.2), (256, 0.5)])
    _write(short, "m", 1, [(128, 0.3), (256, 0.4)])  # disagrees at 256
    run = json.loads((long / "rhymes" / "m-s0.json").read_text())
    assert grid.test_at(run, 300) == 0.5 and grid.test_at(run, 1024) == 0.7
    assert grid.main([str(long), "--after", "256", "--reference", str(short)]) == 0
    out = capsys.readouterr().out
    assert "| rhymes | m | 2 | 0.250 / 0.30 | 0.550 / 0.60 | 0.550 / 0.60 | 0.650 / 0.70 | 1/2 | +0.100 |" in out
    assert "3 shared (run, budget) points equal, 1 differ" in out
    with pytest.raises(SystemExit, match="no runs under"):
        grid.main([str(tmp_path / "empty")])
