"""What the checkpoint-scoring benchmarks share: recorded paths and result files."""

from __future__ import annotations

import json

from tests.helpers import import_benchmark


def test_recorded_paths_are_relative_to_the_repository_when_inside_it(tmp_path):
    meta_runs = import_benchmark("meta_runs")
    assert meta_runs.shown(meta_runs.ROOT / "configs" / "data" / "ii_pool.yaml") == "configs/data/ii_pool.yaml"
    assert meta_runs.shown(tmp_path / "out.md") == str(tmp_path / "out.md")  # outside: as given, absolute


def test_results_are_written_compact_and_whole_with_their_report(tmp_path):
    meta_runs = import_benchmark("meta_runs")
    out = tmp_path / "deep" / "runs.json"
    payload = {"runs": {"a-s0": {"group_gain": [0.1, -0.25]}}}
    meta_runs.write_results(out, payload, "python x.py --out runs.json", "| table |\n")
    assert json.loads(out.read_text()) == payload
    assert "\n" not in out.read_text() and ", " not in out.read_text()  # compact: no indentation or spaces
    assert out.with_suffix(".md").read_text() == "`python x.py --out runs.json`\n\n| table |\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["runs.json", "runs.md"]  # no temporary file left
