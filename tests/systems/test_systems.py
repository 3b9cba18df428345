"""The encoder and world-model systems end to end through the CLI, on synthetic triples (RuleLLM)."""

from pathlib import Path

import pytest
import torch

from tap.cli import main
from tap.errors import TapError
from tap.systems import ContrastiveEncoder, WorldModel
from tap.systems.checkpoints import find_checkpoint
from tests.helpers import synthetic_overrides

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["train.py"])


def _fit(config, overrides, *extra, epochs=2):
    return main(["fit", "--config", str(CONFIGS / config), *overrides, f"--trainer.max_epochs={epochs}",
                 "--trainer.log_every_n_steps=1", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A hash-backbone encoder, then a hierarchical world model on it (with 3 sibling edits per visited
    chain), both fitted for two epochs (once for the module; tests must not change what it returns)."""
    tmp_path = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["train.py"])
        mp.setenv("TAP_CACHE", str(tmp_path / "cache"))
        overrides = synthetic_overrides(tmp_path, mp)
        enc_dir = tmp_path / "enc"
        enc = _fit("encoder.yaml", overrides, "--model.init_args.backbone=hash", f"--checkpoint.dirpath={enc_dir}")
        wm = _fit("world_model.yaml", overrides, f"--model.init_args.encoder={enc_dir}",
                  f"--checkpoint.dirpath={tmp_path / 'wm'}", "--data.init_args.siblings=3")
        wm.datamodule.setup()
    return {"enc": enc, "wm": wm, "enc_ckpt": enc_dir / "best.ckpt", "wm_dir": tmp_path / "wm"}


def test_resolved_config_is_saved_beside_the_checkpoints(trained):
    import yaml

    config = yaml.safe_load((trained["wm_dir"] / "config.yaml").read_text())
    assert config["model"]["class_path"] == "tap.systems.WorldModel"
    assert config["model"]["init_args"]["world_model"] == "hierarchical"
    assert config["data"]["init_args"]["window"] == 2


def test_encoder_logs_health_and_distance_spearman(trained):
    metrics = trained["enc"].trainer.callback_metrics
    for key in ("val/distance_spearman", "val/health/std", "val/health/uniformity", "train/loss/infonce",
                "train/loss/align", "val/positive_rate"):
        assert key in metrics, key
    assert metrics["val/health/std"] > 0


def test_world_model_logs_named_terms_and_rank_metrics(trained):
    metrics = trained["wm"].trainer.callback_metrics
    for term in ("latent", "reward", "response", "delta", "kl_dyn", "kl_rep", "effect", "rank", "rank_dense",
                 "effect_siblings"):
        assert f"train/loss/{term}" in metrics, term
    for key in ("val/reward/spearman", "val/reward/mae", "val/edit/spearman", "val/edit/mae",
                "val/reward_observed/spearman", "val/latent_error/h1", "val/latent_error/h2",
                "val/latent_error_copy/h1", "val/uncertainty/spearman",
                # sibling groups: the model and the non-learned prior on the same groups, and calibration
                "val/sibling/spearman", "val/selection/gain", "val/selection/oracle", "val/sibling_edit/spearman",
                "val/sibling_edit_dense/spearman", "val/prior/sibling/spearman", "val/prior/selection/gain",
                "val/calibration/coverage", "val/calibration/spearman", "val/calibration/scale",
                # judged on the second half of the examples, beside the noise ceiling (the first half's order)
                "val/sibling_half/spearman", "val/sibling_edit_half/spearman", "val/prior/sibling_half/spearman",
                "val/ceiling/sibling_half/spearman", "val/ceiling/sibling_edit_half/spearman"):
        assert key in metrics, key
    # a share of the ceiling per task wherever the ceiling is positive there, and their mean over those tasks
    shares = [k for k in metrics if k.startswith("val/sibling_half/share/")]
    ceilings = [k for k in metrics if k.startswith("val/ceiling/sibling_half/spearman/") and metrics[k] > 0]
    assert len(shares) == len(ceilings)
    if shares:
        assert float(metrics["val/sibling_half/share"]) == pytest.approx(
            sum(float(metrics[k]) for k in shares) / len(shares), abs=1e-6)
    assert any(k.startswith("val/reward/spearman/add_") for k in metrics)  # per task
    assert any(k.startswith("val/calibration/coverage/add_") for k in metrics)
    model = trained["wm"].model
    ops, delta = trained["wm"].datamodule.op_effects("train")
    assert model.op_delta[1].sum() == len(ops) > 0  # the prior counted every training edit once, before training
    # per-operation sums, with an absolute tolerance: a total near zero makes a relative one flaky (summation order)
    for op in range(model.op_delta.shape[1]):
        assert float(model.op_delta[1, op]) == int((ops == op).sum())
        assert float(model.op_delta[0, op]) == pytest.approx(float(delta[ops == op].sum()), abs=1e-5)
    assert float(model.interval_scale) == pytest.approx(float(metrics["val/calibration/scale"]))


def test_checkpoints_round_trip_without_the_encoder_file(trained):
    live = trained["wm"].model.eval()
    saved = trained["wm_dir"].parent / "roundtrip" / "final.ckpt"
    trained["wm"].trainer.save_checkpoint(saved)
    enc_dir = trained["enc_ckpt"].parent
    hidden = enc_dir.rename(enc_dir.with_name("enc_hidden"))  # the world-model checkpoint must not need it
    try:
        loaded = WorldModel.from_checkpoint(saved.parent)  # a run folder works as well as a file
    finally:
        hidden.rename(enc_dir)
    assert loaded.hparams.encoder_hparams["backbone"] == "hash"
    dm = trained["wm"].datamodule
    batch = next(iter(dm.val_dataloader()))[0]["windows"]  # (windows and sibling groups, batch_idx, loader_idx)
    assert torch.equal(loaded.interval_scale, live.interval_scale) and torch.equal(loaded.op_delta, live.op_delta)
    with torch.no_grad():
        a, b = live.rollout(batch), loaded.rollout(batch)
    # equal up to float round-off: matmul results depend slightly on how texts were batched
    assert torch.allclose(a["feat_img"], b["feat_img"], atol=1e-5)
    assert torch.allclose(a["feat_obs"], b["feat_obs"], atol=1e-5)
    with torch.no_grad():
        r1 = live.net.heads.reward(a["feat_img"])[0]
        r2 = loaded.net.heads.reward(b["feat_img"])[0]
    assert torch.allclose(r1, r2, atol=1e-5)


def test_encoder_checkpoint_round_trip(synthetic_data, tmp_path):
    cli = _fit("encoder.yaml", synthetic_data, "--model.init_args.backbone=hash", f"--checkpoint.dirpath={tmp_path}",
               epochs=1)
    live = cli.model.freeze_encoder()
    cli.trainer.save_checkpoint(tmp_path / "final.ckpt")
    loaded = ContrastiveEncoder.from_checkpoint(tmp_path / "final.ckpt")
    views = [{"instruction": "Add the numbers.", "segments": ["Add the numbers.", "Carry."],
              "tokens": "Add the numbers. Carry."}]
    a, b = live(["ctx"], views), loaded(["ctx"], views)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_planner_interface_on_real_chains(trained):
    import random

    from tap.chains import edit_space, initial_chain
    from tests.helpers import arithmetic_task

    wm = WorldModel.from_checkpoint(trained["wm_dir"])
    task = arithmetic_task(30)
    space = edit_space(task)
    chain = initial_chain(task.description)
    rng = random.Random(0)
    edits = [space.sample(chain, rng) for _ in range(4)]
    lat = wm.encode_chains([chain] * 4, task.description)
    actions, scales = wm.embed_edits(edits)
    assert actions.shape == (4, wm.hparams.action_dim) and torch.equal(scales.sum(-1), torch.ones(4))
    states = wm.imagine(wm.observe(lat), actions.unsqueeze(1), scales.unsqueeze(1))
    assert wm.reward(states[-1]).shape == (4,) and wm.uncertainty(states[-1]).shape == (4,)


def test_validate_and_test_report_world_model_metrics(trained, synthetic_data):
    ckpt = find_checkpoint(trained["wm_dir"])
    for sub in ("validate", "test"):
        cli = main([sub, "--config", str(CONFIGS / "world_model.yaml"), *synthetic_data,
                    "--model.init_args.encoder=hash", f"--ckpt_path={ckpt}"])
        stage = "val" if sub == "validate" else "test"
        assert f"{stage}/reward/spearman" in cli.trainer.callback_metrics


def test_missing_checkpoints_and_wrong_kinds_fail_clearly(trained, synthetic_data, tmp_path):
    with pytest.raises(TapError, match="does not exist"):
        main(["test", "--config", str(CONFIGS / "world_model.yaml"), *synthetic_data, "--model.init_args.encoder=hash",
              f"--ckpt_path={tmp_path / 'nope.ckpt'}"])
    with pytest.raises(TapError, match="configs/encoder.yaml"):
        WorldModel(encoder=str(tmp_path / "missing.ckpt"))
    with pytest.raises(TapError, match="ContrastiveEncoder checkpoint, but a WorldModel"):
        WorldModel.from_checkpoint(trained["enc_ckpt"])
    with pytest.raises(TapError, match="WorldModel checkpoint, but a ContrastiveEncoder"):
        ContrastiveEncoder.from_checkpoint(trained["wm_dir"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(TapError, match="no .ckpt"):
        WorldModel.from_checkpoint(tmp_path / "empty")


def test_unknown_loss_terms_and_models_are_named():
    with pytest.raises(ValueError, match="latnet"):
        WorldModel(encoder="hash", loss_scales={"latnet": 1.0})
    with pytest.raises(ValueError, match="infonse"):
        ContrastiveEncoder(backbone="hash", loss_scales={"infonse": 1.0})


def test_find_checkpoint_prefers_best_then_last(tmp_path):
    (tmp_path / "run" / "sub").mkdir(parents=True)
    for name in ("epoch=3.ckpt", "last.ckpt"):
        (tmp_path / "run" / "sub" / name).write_bytes(b"x")
    assert find_checkpoint(tmp_path / "run").name == "last.ckpt"
    (tmp_path / "run" / "best.ckpt").write_bytes(b"x")
    assert find_checkpoint(tmp_path / "run").name == "best.ckpt"
    with pytest.raises(TapError, match="cannot read"):
        WorldModel.from_checkpoint(tmp_path / "run")


def test_tensorboard_gets_scatter_plots_and_the_projector(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for key, tag in (("wm", "val/reward_scatter"), ("enc", "val/latent_vs_response_distance")):
        log_dir = Path(trained[key].trainer.logger.log_dir)
        assert (log_dir / "projector_config.pbtxt").exists()  # chain latents with task and reward metadata
        acc = EventAccumulator(str(log_dir))
        acc.Reload()
        assert tag in acc.Tags()["images"]


def test_imagination_policy_trains_and_plans_without_the_world_model_file(trained, tmp_path, monkeypatch):
    import shutil

    from tap.planning import PlanConfig, Planner
    from tap.systems import ImaginationPolicy
    from tests.helpers import RuleLLM, synthetic_overrides

    wm_copy = tmp_path / "wm_copy"
    shutil.copytree(trained["wm_dir"], wm_copy)
    overrides = synthetic_overrides(tmp_path, monkeypatch)
    cli = _fit("policy.yaml", overrides, f"--model.init_args.world_model_checkpoint={wm_copy}",
               "--model.init_args.candidates=4", "--model.init_args.rollout_horizon=3",
               f"--checkpoint.dirpath={tmp_path / 'pol'}")
    metrics = cli.trainer.callback_metrics
    for key in ("train/loss/actor", "train/loss/critic", "train/loss/entropy", "train/loss/slow", "val/return",
                "val/return_random", "val/return_gain", "val/edit/spearman"):
        assert key in metrics, key
    assert metrics["train/entropy"] > 0
    # the world model stayed frozen while the policy trained
    frozen = WorldModel.from_checkpoint(wm_copy).state_dict()
    assert all(torch.equal(frozen[k], v) for k, v in cli.model.world_model.state_dict().items())
    shutil.rmtree(wm_copy)  # the policy checkpoint carries the world model
    policy = ImaginationPolicy.from_checkpoint(tmp_path / "pol")
    assert policy.hparams.world_model_data["trajectories"] == 6
    # a checkpoint saved before the argument was renamed (world_model -> world_model_checkpoint) still loads
    old = torch.load(next((tmp_path / "pol").glob("*.ckpt")), weights_only=False)
    old["hyper_parameters"]["world_model"] = old["hyper_parameters"].pop("world_model_checkpoint")
    torch.save(old, tmp_path / "old_policy.ckpt")
    reloaded = ImaginationPolicy.from_checkpoint(tmp_path / "old_policy.ckpt")
    assert reloaded.hparams.world_model_checkpoint == str(wm_copy)
    task = trained["wm"].datamodule.tasks[0]  # a task the world model was trained on
    single = {"compose": 0, "compose_hedge": False, "adapt": 0.0, "op_bonus": False, "menu": 8}
    planner = Planner.from_checkpoint(tmp_path / "pol", llm=RuleLLM(), config=PlanConfig(
        settings={**single, "ranker": "policy"}, eval_examples=4, test_examples=0))
    result = planner.optimize(task, budget_calls=24, seed=0, progress=False)
    assert result.method == "tap-policy" and result.costs["search"]["example_evals"] <= 24
    assert result.costs["collection"]["task_in_training_data"]
    planner.config.settings = {**single, "ranker": "gradient"}
    result = planner.optimize(task, budget_calls=16, seed=0, progress=False)  # the gradient planner as the ranker
    assert result.method == "tap-gradient" and result.check_replay() == result.final_chain
