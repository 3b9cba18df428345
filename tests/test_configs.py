"""Every config in configs/ parses through the project's LightningCLI and runs with ``fast_dev_run``
(tiny encoder, synthetic triples); the debug overlay shrinks every model config; wrong keys fail clearly."""

from pathlib import Path

import pytest

from tap.cli import main
from tests.helpers import save_tiny_world_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATA_CONFIGS = sorted((CONFIGS / "data").glob("*.yaml"))
MODEL_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "debug.yaml")
#: how each system is made tiny in tests: the hash text encoder, no MiniLM download
TINY = {"ContrastiveEncoder": ["--model.init_args.backbone=hash"], "WorldModel": ["--model.init_args.encoder=hash"],
        "ImaginationPolicy": ["--model.init_args.world_model_checkpoint={wm}", "--model.init_args.candidates=4",
                              "--model.init_args.rollout_horizon=2"]}


@pytest.fixture(scope="module")
def tiny_wm(tmp_path_factory):
    """A tiny world-model checkpoint for the policy config."""
    return save_tiny_world_model(tmp_path_factory.mktemp("wm") / "wm.ckpt")


def _tiny(path: Path, wm: Path) -> list[str]:
    text = path.read_text()
    return [a.format(wm=wm) for a in next(v for k, v in TINY.items() if f"tap.systems.{k}" in text)]


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["train.py"])  # the CLI gets its arguments through args= only


@pytest.mark.parametrize("path", DATA_CONFIGS, ids=lambda p: p.name)
def test_data_config_parses(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / "world_model.yaml"), "--data", str(path), "--print_config"])
    assert exit_info.value.code == 0
    assert "class_path: tap.collection.datamodule.TriplesDataModule" in capsys.readouterr().out


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.name)
def test_model_config_runs_fast_dev_run(path, synthetic_data, tiny_wm):
    cli = main(["fit", "--config", str(path), *synthetic_data, *_tiny(path, tiny_wm), "--trainer.fast_dev_run=true"])
    assert cli.trainer.state.finished
    assert "train/loss_step" in cli.trainer.callback_metrics or "train/loss" in cli.trainer.callback_metrics


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.name)
def test_debug_overlay_shrinks_every_config(path, synthetic_data, capsys, tiny_wm):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--config", str(CONFIGS / "debug.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "limit_train_batches: 2" in out and "trajectories: 4" in out and "runs/debug" in out
    cli = main(["fit", "--config", str(path), "--config", str(CONFIGS / "debug.yaml"), *synthetic_data,
                *_tiny(path, tiny_wm)])
    assert cli.trainer.state.finished and cli.trainer.global_step == 2


def test_wrong_keys_are_named(capsys):
    for key in ("--data.init_args.trajectoriez", "--model.init_args.latnt_dim", "--checkpoint.monitr"):
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", str(CONFIGS / "encoder.yaml"), key, "3", "--print_config"])
        assert exit_info.value.code != 0
        assert key.rsplit(".", 1)[1] in capsys.readouterr().err


def test_there_are_configs():
    assert DATA_CONFIGS and {p.name for p in MODEL_CONFIGS} >= {"encoder.yaml", "world_model.yaml", "policy.yaml"}


def test_training_pool_and_transfer_set_are_disjoint_and_load():
    import yaml

    from tap.tasks import load_task

    pool = yaml.safe_load((CONFIGS / "data" / "ii_pool.yaml").read_text())["init_args"]["tasks"]
    transfer = yaml.safe_load((CONFIGS / "data" / "ii_transfer.yaml").read_text())["init_args"]
    assert len(transfer["tasks"]) >= 4 and not set(pool) & set(transfer["tasks"])
    assert transfer["split_fractions"] == [0.0, 1.0]  # only ever test data
    wide = yaml.safe_load((CONFIGS / "data" / "ii_pool_wide.yaml").read_text())["init_args"]
    pool_settings = yaml.safe_load((CONFIGS / "data" / "ii_pool.yaml").read_text())["init_args"]
    assert wide["tasks"][: len(pool)] == pool and not set(wide["tasks"]) & set(transfer["tasks"])
    assert {k: v for k, v in wide.items() if k != "tasks"} == {k: v for k, v in pool_settings.items() if k != "tasks"}
    for spec in pool + transfer["tasks"]:
        if spec.startswith("ii:"):
            assert load_task(spec).match == "surface"
    # the quickstart trains on pool tasks and plans on a transfer task (python -m tap.pipeline)
    from tap import pipeline

    quick = yaml.safe_load((CONFIGS / "data" / "quickstart.yaml").read_text())["init_args"]["tasks"]
    assert quick == pipeline._training_tasks() and set(quick) <= set(pool)
    assert pipeline.TARGET in transfer["tasks"]


@pytest.mark.parametrize("config,key,hint", [("world_model.yaml", "latnet", "'latent'"),
                                             ("encoder.yaml", "infonse", "'infonce'")])
def test_misspelled_loss_scale_is_one_clear_sentence(config, key, hint):
    from tap.errors import TapError

    with pytest.raises(TapError, match=rf"unknown loss term\(s\) \['{key}'\] in loss_scales \(did you mean .*{hint}"):
        main(["fit", "--config", str(CONFIGS / config), f"--model.init_args.loss_scales.{key}=1.0",
              "--model.init_args.encoder=hash" if config == "world_model.yaml" else "--model.init_args.backbone=hash"])


def test_console_scripts_resolve_to_callables():
    import importlib

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((CONFIGS.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"tap-train", "tap-plan", "tap-collect", "tap-tasks"} <= set(scripts)
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))
