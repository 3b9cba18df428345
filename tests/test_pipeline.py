"""``python -m tap.pipeline``: meta-train a world model on training tasks, then search a task it never saw with
TaP's search (ranked by the prior; on request also by the model) and with random-sh at the same calls, in one
command (here on task files, the hash encoder and the rule-based fake LLM)."""

from __future__ import annotations

import pytest

from tap import pipeline
from tap.collection.datamodule import TriplesDataModule
from tap.planning import Planner
from tap.search import SearchResult
from tests.helpers import RuleLLM, write_arithmetic_jsonl


@pytest.fixture
def fake_llm(monkeypatch):
    monkeypatch.setattr(TriplesDataModule, "llm", property(lambda self: RuleLLM()))
    monkeypatch.setattr(Planner, "llm", property(lambda self: RuleLLM()))
    monkeypatch.setattr("sys.argv", ["pipeline"])


def test_pipeline_trains_on_some_tasks_plans_another_against_random_sh_then_resumes(tmp_path, fake_llm, capsys):
    train = [write_arithmetic_jsonl(tmp_path / f"train{i}.jsonl", 60) for i in range(2)]
    target = write_arithmetic_jsonl(tmp_path / "target.jsonl", 80)
    argv = ["--task", target, "--train-tasks", *train, "--backbone", "hash", "--trajectories", "4",
            "--world-model-epochs", "1", "--budget-calls", "48", "--eval-examples", "8", "--test-examples", "6",
            "--out", str(tmp_path / "ckpt"), "--runs", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    assert pipeline.main(argv) == 0
    out = capsys.readouterr().out
    assert all(f"{i}/3" in out for i in range(1, 4)) and "TaP against random-sh" in out
    assert "preset model" not in out  # the world model's own ranking only on request (--presets)
    assert (tmp_path / "ckpt" / "world_model" / "best.ckpt").exists()
    assert not (tmp_path / "ckpt" / "encoder").exists()  # a frozen text encoder unless --encoder-epochs
    assert not (tmp_path / "runs" / "target-model-s0").exists()
    # a rerun finds the checkpoint and only plans again (every call from the cache), here with the world model's
    # ranking too; random-sh, the baseline, runs whether named or not
    assert pipeline.main([*argv, "--presets", "model", "default"]) == 0
    again = capsys.readouterr().out
    assert "1/4" not in again and all(f"{i}/4" in again for i in (2, 3, 4))
    runs = {m: SearchResult.load(tmp_path / "runs" / f"target-{m}-s0") for m in ("default", "model", "random")}
    assert [r.method for r in runs.values()] == ["tap", "tap-model", "random-sh"]
    for r in runs.values():
        assert r.costs["search"]["example_evals"] <= 48 and set(r.test) == {"initial", "final"}
    for m in ("default", "model"):
        assert runs[m].costs["collection"]["chain_evals_this_task"] == 0  # never trained on the target
        assert not runs[m].costs["collection"]["task_in_training_data"]
    for text, rows in ((out, 2), (again, 3)):
        table = [ln for ln in text.splitlines() if ln.startswith(("| tap |", "| tap-model |", "| random-sh |"))]
        assert len(table) == rows and "TaP - random-sh, test accuracy at 48 calls: tap " in text
    assert "tap-model +" in again or "tap-model -" in again
    # a checkpoint trained against another frozen model (say, another dtype) is refused, not mixed in
    marker = tmp_path / "ckpt" / "world_model" / "frozen_model.txt"
    ours = marker.read_text().strip()
    marker.write_text("smollm2-135m-instruct-q4_1@float32\n")
    assert pipeline.main(argv) == 2
    err = capsys.readouterr().err
    assert "smollm2-135m-instruct-q4_1@float32" in err and ours in err and "--force" in err
    assert pipeline.main([*argv, "--force"]) == 0  # trains again against this one, in place of the old
    assert "1/3" in capsys.readouterr().out and marker.read_text().strip() == ours
    names = [f.name for f in (tmp_path / "ckpt" / "world_model").rglob("*.ckpt")]
    assert names == ["best.ckpt"]  # one file per trained model, and no best-v1.ckpt beside the old one


def test_pipeline_refuses_a_target_it_trains_on(tmp_path, fake_llm, capsys):
    task = write_arithmetic_jsonl(tmp_path / "t.jsonl", 40)
    assert pipeline.main(["--task", task, "--train-tasks", task, "--out", str(tmp_path / "c")]) == 2
    assert "never saw" in capsys.readouterr().err
    assert pipeline.main(["--task", "ii:no_such_task", "--out", str(tmp_path / "c")]) == 2
    assert "no_such_task" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_pipeline_can_train_the_contrastive_encoder_first(tmp_path, fake_llm, capsys):
    train = [write_arithmetic_jsonl(tmp_path / f"train{i}.jsonl", 60) for i in range(2)]
    target = write_arithmetic_jsonl(tmp_path / "target.jsonl", 80)
    argv = ["--task", target, "--train-tasks", *train, "--backbone", "hash", "--trajectories", "4",
            "--encoder-epochs", "1", "--world-model-epochs", "1", "--budget-calls", "24", "--eval-examples", "8",
            "--test-examples", "0", "--out", str(tmp_path / "ckpt"), "--runs", str(tmp_path / "runs"),
            "--data-dir", str(tmp_path / "data")]
    assert pipeline.main(argv) == 0
    assert (tmp_path / "ckpt" / "encoder" / "best.ckpt").exists()
    from tap.systems import WorldModel

    wm = WorldModel.from_checkpoint(tmp_path / "ckpt" / "world_model")
    assert wm.hparams.encoder_hparams["backbone"] == "hash" and wm.hparams.effect_prior


def test_pipeline_plans_with_the_shipped_world_model_and_prints_the_stored_reference(tmp_path, fake_llm, capsys,
                                                                                    monkeypatch):
    import json

    from tests.helpers import save_tiny_world_model

    tiny = save_tiny_world_model(tmp_path / "shipped.ckpt", tasks=["ii:sentiment", "ii:cause_and_effect"])
    monkeypatch.setattr("tap.systems.checkpoints.shipped_world_model", lambda model="smollm2": tiny)
    monkeypatch.setattr("tap.systems.checkpoints.PRETRAINED", tmp_path)
    target = write_arithmetic_jsonl(tmp_path / "target.jsonl", 80)
    (tmp_path / "reference.json").write_text(json.dumps({target: {
        "budget_calls": 48, "eval_examples": 8, "test_examples": 6, "seeds": 5, "default": [0.7, 0.1],
        "random": [0.2, 0.1], "delta": [0.5, 0.12], "ahead": 5, "cpu": "AMD EPYC", "date": "2026-12-08",
        "command": "python benchmarks/compare.py ..."}}))
    argv = ["--task", target, "--budget-calls", "48", "--eval-examples", "8", "--test-examples", "6",
            "--runs", str(tmp_path / "runs")]
    assert pipeline.main(argv) == 0
    out = capsys.readouterr().out
    assert "world model: the one that ships for SmolLM2" in out and "collect sibling" not in out
    assert "1/2" in out and "2/2" in out and "TaP against random-sh" in out
    assert "over 5 seeds (stored, AMD EPYC, 2026-12-08): tap 0.700 ± 0.100, random-sh 0.200 ± 0.100, paired " \
           "difference +0.500 ± 0.120" in out
    assert pipeline.main([*argv, "--budget-calls", "40"]) == 0  # other settings: no stored reference claimed
    assert "no stored multi-seed comparison" in capsys.readouterr().out
    assert pipeline.main(["--task", "ii:sentiment"]) == 2  # a task the shipped model was trained on
    assert "one of the training tasks" in capsys.readouterr().err
