"""The meta world-model benchmark's bookkeeping: per-task metrics from a test run, and the report's
intervals and paired differences against the prior, on hand-made results."""

from __future__ import annotations

import pytest

from tests.helpers import import_benchmark


@pytest.fixture(scope="module")
def meta():
    return import_benchmark("meta_world_model")


def test_per_task_metrics_from_suffixed_and_single_task_runs(meta):
    metrics = {"test/selection/gain/rhymes": 0.5, "test/selection/gain/sentiment": 0.1, "test/selection/gain": 0.3,
               "test/prior/selection/gain/rhymes": 0.2, "val/loss": 1.0}
    out = meta.per_task(metrics, ["ii:rhymes", "ii:sentiment"])
    assert out["rhymes"] == {"selection/gain": 0.5, "prior/selection/gain": 0.2}
    assert out["sentiment"] == {"selection/gain": 0.1}
    one = meta.per_task({"test/selection/gain": 0.4, "test/sibling/spearman/rhymes": 0.6}, ["ii:rhymes"])
    assert one == {"rhymes": {"selection/gain": 0.4, "sibling/spearman": 0.6}}


def test_report_gives_intervals_and_paired_differences(meta, monkeypatch):
    monkeypatch.setattr(meta, "noise_ceiling", lambda n=32: {"rhymes": 0.8})
    results = [{"label": "hierarchical", "model": "hierarchical", "tag": "", "kind": "transfer", "seed": s,
                "trained_on": ["ii:sentiment", "ii:diff"], "selection_ties": "split",
                "test": {"rhymes": {"selection/gain": g, "prior/selection/gain": p, "sibling_edit/spearman": 0.4,
                                    "calibration/coverage": 0.8}}}
               for s, (g, p) in enumerate([(0.5, 0.1), (0.7, 0.2), (0.6, 0.3)])]
    text = meta.report(results)
    assert "Transfer runs trained on 2 pool tasks, tested on collection sample(s) 0 of the transfer set." in text
    row = next(line for line in text.splitlines() if line.startswith("| rhymes | transfer | hierarchical"))
    assert "0.60 ± 0.25" in row  # mean 0.6, sd 0.1, t(2) = 4.303: 4.303 * 0.1 / sqrt(3) = 0.248
    assert row.endswith("| 0.80 | 0.40 ± 0.25 |")  # the ceiling, then gain - prior paired per seed
    prior = "| rhymes | transfer | prior (op mean Δ) | 3 | 0.20 ± 0.25"
    assert any(line.startswith(prior) for line in text.splitlines())
    summary = next(line for line in text.splitlines() if line.startswith("| hierarchical | 3 |"))
    assert "| 0.50 ± 0.00 |" in summary  # edit ρ / ceiling = 0.4 / 0.8 in every seed
    assert any(line.startswith("| prior (op mean Δ) | 3 | 0.20 ± 0.25 |") for line in text.splitlines())
    assert "†" not in text
    other = [{**r, "llm": "qwen2.5-coder-0.5b"} for r in results]  # SmolLM2's ceiling says nothing of Qwen's edits
    row = next(line for line in meta.report(other).splitlines() if line.startswith("| rhymes | transfer | hier"))
    assert row.endswith("| - | 0.40 ± 0.25 |")
    del results[0]["selection_ties"]  # one run tested under the old tie rule marks its rows and the prior's
    text = meta.report(results)
    assert "| rhymes | transfer | hierarchical † | 3 |" in text and "| prior (op mean Δ) † | 3 |" in text
    assert text.endswith(meta.OLD_RULES)


def test_leave_one_out_takes_only_pool_tasks(meta, capsys):
    with pytest.raises(SystemExit):
        meta.main(["--loo", "ii:rhymes"])  # a transfer task: never trained on, so never left out either
    assert "must be pool tasks" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        meta.main(["--pool", "ii:rhymes"])  # training on part of the pool: only pool tasks
    assert "--pool tasks must be tasks of ii_pool.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        meta.main(["--val-tasks", "ii:rhymes"])  # a transfer task cannot validate a pool model
    assert "--val-tasks must be tasks of the pool" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        meta.main(["--pool-config", "configs/data/nope.yaml"])
    assert "--pool-config configs/data/nope.yaml: no such file" in capsys.readouterr().err


def test_pool_config_chooses_the_tasks_and_the_data_trained_from(meta, monkeypatch, tmp_path, capsys):
    wide = tmp_path / "wide.yaml"
    wide.write_text("class_path: tap.collection.datamodule.TriplesDataModule\ninit_args:\n  tasks: [ii:diff, ii:sum]\n")
    with pytest.raises(SystemExit):
        meta.main(["--pool-config", str(wide), "--pool", "ii:sentiment"])  # in ii_pool.yaml, not in this pool
    assert "--pool tasks must be tasks of wide.yaml" in capsys.readouterr().err
    seen, run = [], meta.run
    monkeypatch.setattr(meta, "run", lambda *a, **k: seen.append((a[3], k["pool_data"])) or {"name": a[5]})
    monkeypatch.setattr(meta, "report", lambda results: "")
    meta.main(["--models", "hierarchical", "--pool-config", str(wide), "--out", str(tmp_path / "r.json")])
    assert seen == [(["ii:diff", "ii:sum"], wide)]
    calls = []
    monkeypatch.setattr(meta, "_cli", lambda argv: calls.append(argv) or {})
    monkeypatch.setattr("tap.systems.checkpoints.find_checkpoint", lambda d: tmp_path / "best.ckpt")
    r = run("hierarchical", 0, ["ii:rhymes"], ["ii:diff"], meta.TRANSFER, "x-s0", None, [], pool_data=wide)
    assert calls[0][calls[0].index("--data") + 1] == str(wide) and r["pool_config"] == "wide.yaml"
    assert calls[1][calls[1].index("--data") + 1] == str(meta.TRANSFER)  # tested on the transfer set as before


def test_transfer_config_chooses_the_test_data_and_one_llm_serves_both(meta, monkeypatch, tmp_path, capsys):
    head = "class_path: tap.collection.datamodule.TriplesDataModule\ninit_args:\n"
    pool = tmp_path / "pool_q.yaml"
    pool.write_text(head + "  tasks: [ii:diff, ii:sum]\n  model: qwen2.5-coder-0.5b\n")
    transfer = tmp_path / "transfer_q.yaml"
    transfer.write_text(head + "  tasks: [ii:rhymes]\n  model: qwen2.5-coder-0.5b\n")
    seen, run = [], meta.run
    monkeypatch.setattr(meta, "run", lambda *a, **k: seen.append((a[2], a[3], a[4])) or {"name": a[5]})
    monkeypatch.setattr(meta, "report", lambda results: "")
    meta.main(["--models", "hierarchical", "--pool-config", str(pool), "--transfer-config", str(transfer),
               "--out", str(tmp_path / "r.json")])
    assert seen == [(["ii:rhymes"], ["ii:diff", "ii:sum"], transfer)]
    with pytest.raises(SystemExit):  # SmolLM2's transfer set against a Qwen pool: refused before any fit
        meta.main(["--models", "hierarchical", "--pool-config", str(pool), "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert "different frozen LLMs (qwen2.5-coder-0.5b, smollm2)" in err and "pool_q.yaml" in err
    alias = tmp_path / "transfer_alias.yaml"  # the same model under its other offline name is one LLM
    alias.write_text(head + "  tasks: [ii:rhymes]\n  model: Qwen2.5-Coder-0.5B-Instruct\n")
    seen.clear()
    meta.main(["--models", "hierarchical", "--pool-config", str(pool), "--transfer-config", str(alias),
               "--out", str(tmp_path / "r.json")])
    assert seen == [(["ii:rhymes"], ["ii:diff", "ii:sum"], alias)]
    seen.clear()  # leave-one-task-out tests on the pool itself: no transfer set, no mixing
    meta.main(["--models", "hierarchical", "--pool-config", str(pool), "--loo", "ii:sum",
               "--out", str(tmp_path / "r.json")])
    assert seen == [(["ii:sum"], ["ii:diff"], pool)]
    with pytest.raises(SystemExit):
        meta.main(["--transfer-config", "configs/data/nope.yaml"])
    assert "--transfer-config configs/data/nope.yaml: no such file" in capsys.readouterr().err
    calls = []
    monkeypatch.setattr(meta, "_cli", lambda argv: calls.append(argv) or {})
    monkeypatch.setattr("tap.systems.checkpoints.find_checkpoint", lambda d: tmp_path / "best.ckpt")
    r = run("hierarchical", 0, ["ii:rhymes"], ["ii:diff"], transfer, "x-s0", None, [], pool_data=pool)
    assert calls[1][calls[1].index("--data") + 1] == str(transfer)
    assert (r["pool_config"], r["test_config"], r["llm"]) == ("pool_q.yaml", "transfer_q.yaml", "qwen2.5-coder-0.5b")


def test_val_tasks_reach_the_fit_only_and_are_not_counted_as_trained_on(meta, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(meta, "_cli", lambda argv: calls.append(argv) or {})
    monkeypatch.setattr("tap.systems.checkpoints.find_checkpoint", lambda d: tmp_path / "best.ckpt")
    r = meta.run("hierarchical", 0, ["ii:rhymes"], ["ii:sentiment", "ii:diff"], meta.TRANSFER, "x-s0", None, [],
                 ["ii:diff"])
    fit, test = calls
    assert "--data.init_args.val_tasks=[ii:diff]" in fit
    assert not any(a.startswith("--data.init_args.val_tasks") for a in test)
    assert r["trained_on"] == ["ii:sentiment"] and r["val_tasks"] == ["ii:diff"]
    assert r["test_samples"] == [0, 1, 2]  # the transfer set is tested on every sample its config serves
    assert meta.report([{**r, "label": "h", "kind": "transfer", "seed": 0, "test": {}}]).startswith(
        "Seeds: [0]. Cells: mean ± 95 % Student-t half-width over seeds. Transfer runs trained on 1 pool tasks, "
        "tested on collection sample(s) 0, 1, 2 of the transfer set.")


def test_test_only_tests_the_existing_checkpoint_and_keeps_the_fit_record(meta, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(meta, "_cli", lambda argv: calls.append(argv) or {"test/selection/gain": 0.4})
    monkeypatch.setattr(meta, "ROOT", tmp_path)
    monkeypatch.setattr("tap.systems.checkpoints.find_checkpoint", lambda d: d / "best.ckpt")
    with pytest.raises(SystemExit, match="no checkpoint .*without --test-only"):
        meta.run("hierarchical", 0, ["ii:rhymes"], ["ii:sentiment"], meta.TRANSFER, "x-s0", None, [], test_only=True)
    assert calls == []  # nothing fitted, nothing tested
    (tmp_path / "checkpoints" / "meta" / "x-s0").mkdir(parents=True)
    r = meta.run("hierarchical", 0, ["ii:rhymes"], ["ii:sentiment"], meta.TRANSFER, "x-s0", None, [], test_only=True)
    assert [argv[0] for argv in calls] == ["test"]  # the checkpoint there is tested, nothing is fitted
    assert r["fit_seconds"] is None and r["val"] == {} and r["selection_ties"] == "split"
    out = tmp_path / "meta.json"
    meta.save_result(out, {"name": "hierarchical-transfer-s0", "fit_seconds": 123.0, "val": {"val/loss": 1.0},
                           "test": {}})
    monkeypatch.setattr(meta, "run", lambda *a, **k: {"name": "hierarchical-transfer-s0", "fit_seconds": None,
                                                      "val": {}, "test": {"rhymes": {"selection/gain": 0.4}},
                                                      "test_only": a[-1]})
    monkeypatch.setattr(meta, "report", lambda results: "")
    meta.main(["--models", "hierarchical", "--test-only", "--out", str(out)])
    import json

    (r,) = json.loads(out.read_text())
    assert r["test_only"] is True and r["fit_seconds"] == 123.0 and r["val"] == {"val/loss": 1.0}
    assert r["test"] == {"rhymes": {"selection/gain": 0.4}} and "retested" in r


def test_results_from_several_processes_are_merged_not_overwritten(meta, tmp_path):
    out = tmp_path / "meta.json"
    meta.save_result(out, {"name": "a-s0", "v": 1})
    meta.save_result(out, {"name": "a-s1", "v": 2})  # another process's run: the file is re-read first
    merged = meta.save_result(out, {"name": "a-s0", "v": 3})  # a rerun replaces its own name only
    assert sorted((r["name"], r["v"]) for r in merged) == [("a-s0", 3), ("a-s1", 2)]
    assert meta.json.loads(out.read_text()) == merged and not list(tmp_path.glob("*.tmp"))


def test_the_prior_gets_a_row_per_training_set(meta, monkeypatch):
    monkeypatch.setattr(meta, "noise_ceiling", lambda n=32: {})

    def run(label, seed, trained, prior):
        return {"label": label, "kind": "transfer", "seed": seed, "trained_on": trained, "selection_ties": "split",
                "test": {"rhymes": {"selection/gain": 0.5, "prior/selection/gain": prior}}}

    small, big = ["ii:sentiment"], ["ii:sentiment", "ii:diff"]
    results = [run("a", 0, small, 0.2), run("a", 1, small, 0.2), run("b", 0, big, 0.9), run("b", 1, big, 0.9)]
    lines = meta.report(results).splitlines()
    assert any(line.startswith("| rhymes | transfer | prior (op mean Δ, 1 task) | 2 | 0.20 ± 0.00") for line in lines)
    assert any(line.startswith("| rhymes | transfer | prior (op mean Δ, 2 tasks) | 2 | 0.90 ± 0.00") for line in lines)
    assert any(line.startswith("| prior (op mean Δ, 2 tasks) | 2 | 0.90 ± 0.00 |") for line in lines)
    old = [{**run("c", s, big, 0.5), "selection_ties": None} for s in (0, 1)]  # tested under the old tie rule
    lines = meta.report(old + results).splitlines()  # listed first, but the prior is read off "b"
    assert any(line.startswith("| prior (op mean Δ, 2 tasks) | 2 | 0.90 ± 0.00 |") for line in lines)
    assert any(line.startswith("| c † | 2 |") for line in lines)
    lines = meta.report(old).splitlines()  # only old runs: the prior comes from them, marked
    assert any(line.startswith("| prior (op mean Δ) † | 2 | 0.50 ± 0.00 |") for line in lines)


def test_fit_only_fits_without_testing_and_a_later_test_only_reads_the_samples_asked_for(meta, monkeypatch, tmp_path):
    import json

    calls = []
    monkeypatch.setattr(meta, "_cli", lambda argv: calls.append(argv) or {"test/selection/gain": 0.4})
    monkeypatch.setattr(meta, "ROOT", tmp_path)
    monkeypatch.setattr("tap.systems.checkpoints.find_checkpoint", lambda d: d / "best.ckpt")
    out = tmp_path / "meta.json"
    meta.main(["--models", "hierarchical", "--fit-only", "--out", str(out)])
    assert [argv[0] for argv in calls] == ["fit"]  # nothing tested: the transfer set may not be collected yet
    (r,) = json.loads(out.read_text())
    assert r["fit_only"] and not any(r["test"].values()) and r["test_samples"] == [] and r["fit_seconds"] is not None
    assert "hierarchical" not in meta.report([{**r, "label": "hierarchical", "kind": "transfer"}])
    calls.clear()
    (tmp_path / "checkpoints" / "meta" / "hierarchical-transfer-s0").mkdir(parents=True)
    meta.main(["--models", "hierarchical", "--test-only", "--test-samples", "2", "0", "--out", str(out)])
    (test,) = calls
    assert test[0] == "test" and "--data.init_args.samples=[2, 0]" in test
    (r,) = json.loads(out.read_text())
    assert "fit_only" not in r and r["test_samples"] == [2, 0] and r["fit_seconds"] is not None


def test_fit_only_and_test_samples_refuse_what_they_cannot_do(meta, capsys):
    for argv, message in ((["--fit-only", "--test-only"], "exclude each other"),
                          (["--test-samples", "7"], "serves samples [0, 1, 2] only"),
                          (["--test-samples", "0", "--loo", "ii:sum"], "--loo tests on the pool")):
        with pytest.raises(SystemExit):
            meta.main(argv)
        assert message in capsys.readouterr().err
