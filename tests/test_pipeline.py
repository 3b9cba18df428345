"""``python -m tap.pipeline``: collect, train the encoder and the world model, plan, in one command
(here on a task file, the hash encoder and the rule-based fake LLM)."""

from __future__ import annotations

import json

from tap import pipeline
from tap.collection.datamodule import TriplesDataModule
from tap.planning import Planner, PlanResult
from tests.helpers import RuleLLM, write_arithmetic_jsonl


def test_pipeline_runs_every_stage_then_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(TriplesDataModule, "llm", property(lambda self: RuleLLM()))
    monkeypatch.setattr(Planner, "llm", property(lambda self: RuleLLM()))
    monkeypatch.setattr("sys.argv", ["pipeline"])
    task = write_arithmetic_jsonl(tmp_path / "add.jsonl", 80)
    argv = ["--task", task, "--backbone", "hash", "--trajectories", "6", "--encoder-epochs", "1",
            "--world-model-epochs", "1", "--budget", "4", "--out", str(tmp_path / "ckpt"),
            "--runs", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    assert pipeline.main(argv) == 0
    out = capsys.readouterr().out
    assert "1/3" in out and "2/3" in out and "3/3" in out and "== final chain ==" in out
    assert (tmp_path / "ckpt" / "encoder" / "best.ckpt").exists()
    assert (tmp_path / "ckpt" / "world_model" / "best.ckpt").exists()
    result = PlanResult.load(tmp_path / "runs" / "plan-s0")
    assert result.costs["search"]["chain_evals"] <= 4 and result.costs["collection"]["task_in_training_data"]
    summary = json.loads(out.strip().splitlines()[-2])  # plan.py's JSON line, then the stage timings
    assert summary["budget"] == 4
    # a rerun finds the checkpoints and only plans again
    assert pipeline.main(argv) == 0
    again = capsys.readouterr().out
    assert "1/3" not in again and "2/3" not in again and "3/3" in again
