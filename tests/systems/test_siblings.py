"""The meta-training parts of the world model on small synthetic data: task conditioning from train
pairs, the effect head and its ranking terms on sibling groups, the split-half deltas the selection
gain is judged on, and the calibrated interval."""

import pytest
import torch

from tap.chains import initial_chain
from tap.chains.chain import Chain
from tap.chains.edits import Edit
from tap.collection.datamodule import TriplesDataModule, collate_siblings, task_pair_texts
from tap.collection.trajectories import collect
from tap.llm.cache import CallCache
from tap.llm.cached import CachedLLM
from tap.systems.world_model import _split_half_deltas
from tests.helpers import RuleLLM, arithmetic_task, tiny_world_model

PAIRS_A = ["Input: What is 1 + 2?\nOutput: 3", "Input: What is 4 + 4?\nOutput: 8", "Input: What is 2 + 5?\nOutput: 7"]
PAIRS_B = ["Input: cat\nOutput: cats", "Input: box\nOutput: boxes", "Input: city\nOutput: cities"]


def _nudged(seed=0):
    """A tiny world model whose zero-initialised layers are nudged, so every input reaches the outputs."""
    wm = tiny_world_model(seed)
    with torch.no_grad():
        for p in wm.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return wm.eval()


def _effects(wm, pairs_per_row):
    chain = initial_chain("Respond to the input.")
    edits = [Edit("instruction", "instruction_edit", (), "Give the plural.")] * len(pairs_per_row)
    with torch.no_grad():
        lat = wm.encoder(["" for _ in pairs_per_row], [wm_views(chain)] * len(pairs_per_row))
        lat["task"] = wm.context_vectors(pairs_per_row, [chain] * len(pairs_per_row))
        parent = wm.observe(lat)
        actions, scales = wm.embed_edits(edits)
        child = wm.imagine(parent, actions.unsqueeze(1), scales.unsqueeze(1))[0]
        return wm.edit_effect(parent, child)


def wm_views(chain):
    from tap.chains.render import chain_views

    return chain_views(chain)


def test_task_conditioning_uses_the_pairs_not_their_order_nor_the_batch():
    wm = _nudged()
    mean, std = _effects(wm, [PAIRS_A, PAIRS_B, PAIRS_A[::-1], []])
    assert not torch.allclose(mean[0], mean[1])  # another task, another predicted effect
    assert torch.allclose(mean[0], mean[2], atol=1e-6)  # the order of the pairs does not matter
    alone, _ = _effects(wm, [PAIRS_A])
    assert torch.allclose(alone[0], mean[0], atol=1e-5)  # nor which other rows share the batch
    assert mean.shape == std.shape == (4, 2) and (std >= 0).all()


def test_no_task_conditioning_gives_empty_task_vectors():
    from tap.systems import WorldModel

    wm = WorldModel(encoder="hash", action_dim=8, deter_dim=8, stoch_dim=2, hidden_dim=16, ensemble=2, bins=11,
                    task_dim=0)
    assert wm.task_encoder is None and wm.task_vectors([PAIRS_A], 1).shape == (1, 0)
    state = wm.observe(wm.encode_chains([initial_chain("Add.")], "Add.", PAIRS_A))
    assert state["task"].shape == (1, 5)  # the chain's structure alone
    bare = WorldModel(encoder="hash", action_dim=8, deter_dim=8, stoch_dim=2, hidden_dim=16, ensemble=2, bins=11,
                      task_dim=0, chain_stats=False)
    assert bare.observe(bare.encode_chains([initial_chain("Add.")], "Add.", PAIRS_A))["task"].shape == (1, 0)


def test_chain_structure_reaches_the_effect():
    from tap.chains.chain import Demo

    wm = _nudged()
    chain = initial_chain("Respond to the input.")
    with_demo = Chain(chain.instruction, chain.answer_format, chain.steps, (Demo(1, "cat", "cats"),))
    a = wm.context_vectors([PAIRS_A, PAIRS_A], [chain, with_demo])
    assert a.shape == (2, 32 + 5) and torch.equal(a[0, :32], a[1, :32]) and not torch.equal(a[0, 32:], a[1, 32:])


def test_edit_effect_std_is_scaled_by_the_calibrated_factor():
    wm = _nudged()
    _, std1 = _effects(wm, [PAIRS_A])
    wm.interval_scale.fill_(3.0)
    _, std3 = _effects(wm, [PAIRS_A])
    assert torch.allclose(std3, 3 * std1)


def test_split_half_deltas_on_a_hand_made_batch():
    correct = torch.tensor([[[1, 1, 0, 0], [1, 0, 1, 1]],  # halves: parent 1.0 / 0.0, child 0.5 / 1.0
                            [[0, 0, 0, 0], [1, 1, 0, 9]]]).float()  # 3 examples (the 4th is masked): 1 + 2
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    first, second = _split_half_deltas({"correct": correct, "example_mask": mask})
    assert first.tolist() == [-0.5, 1.0]
    assert second.tolist() == [1.0, 0.5]


@pytest.fixture(scope="module")
def sibling_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("siblings")
    task = arithmetic_task(60, name="tiny-arith")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TriplesDataModule, "context", lambda self, t, sample=None: task.description)
        mp.setattr(TriplesDataModule, "task_pairs", lambda self, t, sample=None: task_pair_texts(task, 4))
        dm = TriplesDataModule(tasks=["tiny-arith"], trajectories=6, horizon=3, eval_examples=6, batch_size=12,
                               siblings=4, data_dir=str(tmp / "data"), split_fractions=(0.0, 0.0))
        dm._llm = CachedLLM(RuleLLM(), CallCache(tmp / "c.sqlite"))
        collect(dm.configs[0], dm._llm, data_dir=tmp / "data", task=task, progress=False)
        dm.setup()
    return dm


def test_task_pairs_are_the_first_train_pairs():
    task = arithmetic_task(60)
    pairs = task_pair_texts(task, 3)
    assert len(pairs) == 3 and pairs[0] == f"Input: {task.train[0].input}\nOutput: {task.train[0].answer}"


def test_ranking_terms_train_the_effect_head_to_order_siblings(sibling_data):
    groups = sibling_data.groups["train"].items
    batch = collate_siblings(groups)
    assert batch["task_pairs"][0] and len(batch["group"].unique()) == len(groups)
    torch.manual_seed(0)
    wm = tiny_world_model()
    opt = torch.optim.Adam([p for p in wm.parameters() if p.requires_grad], lr=3e-3)
    wm.log = wm.log_dict = lambda *a, **k: None  # no trainer attached
    first = None
    for _ in range(100):
        wm.train()
        loss = wm._sibling_step(batch, "train")
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    wm.eval()
    with torch.no_grad():
        last = float(wm._sibling_step(batch, "val"))  # also feeds the val metrics
    assert last < 0.75 * first
    out = wm.sibling_metrics["val_model"]["sibling"].compute()
    assert out["spearman"] > 0.5  # it learnt to order the siblings it trained on
    assert wm.op_delta[1].sum() == 100 * len(batch["task"])  # the prior counted every training edit


def test_effect_prior_adds_the_operations_prior_to_the_head(sibling_data):
    from tap.errors import TapError
    from tap.systems import WorldModel

    torch.manual_seed(0)
    wm = WorldModel(encoder="hash", action_dim=16, deter_dim=16, stoch_dim=4, hidden_dim=32, ensemble=3, bins=21,
                    effect_prior=True)
    ops, delta = sibling_data.op_effects("train")
    assert len(ops) == sum(len(g) for g in sibling_data.groups["train"].items)  # every edit once
    wm._count_ops(ops, delta)
    wm.eval()
    chain = initial_chain("Respond to the input.")
    edits = [Edit("instruction", "instruction_edit", (), "Give the sum."), Edit("segment", "insert", (0,), "Think.")]
    with torch.no_grad():
        lat = wm.encoder(["", ""], [wm_views(chain)] * 2)
        lat["task"] = wm.context_vectors([PAIRS_A, PAIRS_A], [chain] * 2)
        parent = wm.observe(lat)
        actions, scales = wm.embed_edits(edits)
        child = wm.imagine(parent, actions.unsqueeze(1), scales.unsqueeze(1))[0]
        head, _ = wm.net.effect(parent, child)
        op_ids = torch.tensor([e.op_id for e in edits])
        mean, _ = wm.edit_effect(parent, child, op_ids)
        plan, _ = wm.edit_effect(parent, child, torch.stack([op_ids, op_ids], -1))  # (B, 2): a two-edit plan
    prior = wm.op_prior(op_ids)
    assert torch.allclose(mean[:, 0], head[:, 0] + prior) and torch.equal(mean[:, 1], head[:, 1])
    assert torch.allclose(plan[:, 0], head[:, 0] + 2 * prior)
    with pytest.raises(TapError, match="op_ids"):
        wm.edit_effect(parent, child)


def test_effect_prior_trains_the_head_on_what_the_prior_leaves(sibling_data):
    from tap.systems import WorldModel

    batch = collate_siblings(sibling_data.groups["train"].items)
    torch.manual_seed(0)
    wm = WorldModel(encoder="hash", action_dim=16, deter_dim=16, stoch_dim=4, hidden_dim=32, ensemble=3, bins=21,
                    effect_prior=True)
    wm.log = wm.log_dict = lambda *a, **k: None  # no trainer attached
    wm._count_ops(*sibling_data.op_effects("train"))
    wm._prior_fixed = True
    counts = wm.op_delta.clone()
    opt = torch.optim.Adam([p for p in wm.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(60):
        wm.train()
        loss = wm._sibling_step(batch, "train")
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(wm.op_delta, counts)  # a fixed prior is not counted again while training
    wm.eval()
    with torch.no_grad():
        wm._sibling_step(batch, "val")
    model = wm.sibling_metrics["val_model"]["sibling"].compute()["spearman"]
    prior = wm.sibling_metrics["val_prior"]["sibling"].compute()["spearman"]
    assert model >= prior - 0.05  # starting from the prior, training does not lose what it knows


def _effect_term(wm, batch) -> float:
    seen = {}
    wm.log_dict = lambda d, **k: seen.update(d)
    wm.log = lambda *a, **k: None
    torch.manual_seed(1)  # the same bootstrap masks and samples on every call
    with torch.no_grad():
        wm._sibling_step(batch, "train")
    return float(seen["train/loss/effect_siblings"])


@pytest.mark.parametrize("flat_weight", [0.0, 1.0])
def test_flat_weight_sets_what_flat_sibling_groups_teach_the_effect_head(sibling_data, flat_weight):
    from tap.systems import WorldModel

    batch = collate_siblings(sibling_data.groups["train"].items)
    G = int(batch["group"].max()) + 1
    flat = batch["group"] % 2 == 0  # every other group: all siblings change accuracy alike
    batch["reward"][flat, 1] = batch["reward"][flat, 0]
    moved = {**batch, "reward": batch["reward"].clone()}
    moved["reward"][flat, 1] += 0.3  # still flat: every sibling of the group gains the same
    assert G >= 2 and flat.any() and (~flat).any()
    torch.manual_seed(0)
    wm = WorldModel(encoder="hash", action_dim=16, deter_dim=16, stoch_dim=4, hidden_dim=32, ensemble=3, bins=21,
                    flat_weight=flat_weight).eval()
    same = _effect_term(wm, batch) == pytest.approx(_effect_term(wm, moved), rel=1e-6)
    assert same == (flat_weight == 0.0)  # weight 0: flat groups teach nothing; weight 1: they count


def test_flat_weight_out_of_range_is_refused():
    from tap.systems import WorldModel

    with pytest.raises(ValueError, match="flat_weight"):
        WorldModel(encoder="hash", flat_weight=1.5)


# --- relevance inputs (WorldModel(relevance=True)) ---------------------------------------------------------------

class _Letters(torch.nn.Module):
    """A text backbone for tests: counts of a few letters, so closeness in its space is checkable by hand."""

    def forward(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([[t.count(c) + 0.01 for c in "xyz"] for t in texts])


def _relevant_wm(seed=0, **kw):
    from tap.systems import WorldModel

    torch.manual_seed(seed)
    return WorldModel(encoder="hash", action_dim=16, deter_dim=16, stoch_dim=4, hidden_dim=32, ensemble=3, bins=21,
                      relevance=True, **kw)


X_PAIRS = ["Input: xx\nOutput: x", "Input: x\nOutput: xxx"]  # the task reads as 'x' to _Letters


def test_relevance_inputs_are_the_parents_closeness_and_ten_times_its_change(monkeypatch):
    wm = _relevant_wm()
    monkeypatch.setattr(wm.encoder.net, "embed_text", _Letters().forward)
    parents = [Chain(instruction="xy"), Chain(instruction="xy"), Chain(instruction="yy"), Chain(instruction="xy")]
    children = [Chain(instruction="xx"), Chain(instruction="yy"), Chain(instruction="yy"), Chain(instruction="xx")]
    out = wm.relevance_inputs([X_PAIRS, X_PAIRS, X_PAIRS, []], parents, children)
    assert out.shape == (4, 2)
    # cosines to the task's direction (~x): 'xx' ~1, 'xy' ~0.71, 'yy' ~0
    closeness, change = out[:, 0], out[:, 1] / 10
    assert closeness[:2].tolist() == pytest.approx([2**-0.5, 2**-0.5], abs=0.03)
    assert change[:2].tolist() == pytest.approx([1 - 2**-0.5, -(2**-0.5)], abs=0.03)
    assert out[2, 1].item() == 0.0  # no change of text, no change of relevance
    assert out[3].tolist() == [0.0, 0.0]  # a row without pairs reads zeros, like its task vector
    with pytest.raises(ValueError, match="2 parents but 1 children"):
        wm.relevance_inputs([X_PAIRS, X_PAIRS], parents[:2], children[:1])
    assert tiny_world_model().relevance_inputs([X_PAIRS], parents[:1], children[:1]) is None  # off by default


def test_the_effect_head_reads_the_relevance_of_siblings_and_trains_through_it(sibling_data):
    batch = collate_siblings(sibling_data.groups["train"].items)
    wm = _relevant_wm()
    wm.log = wm.log_dict = lambda *a, **k: None  # no trainer attached
    wm.eval()
    with torch.no_grad():
        sib = wm.sibling_features(batch)
        moved, _ = wm.net.heads.effect(sib["parent"], sib["child"], sib["extra"] + 1.0)
    assert sib["extra"].shape == (len(batch["task"]), 2)
    assert sib["extra"][:, 1].abs().sum() > 0  # the siblings' edits move their prompts
    assert not torch.allclose(moved, sib["residual"])  # the head's prediction depends on them
    wm.train()
    loss = wm._sibling_step(batch, "train")
    loss.backward()
    first = wm.net.heads.effect.members[0][0]  # (hidden, 2F + 2) input layer
    assert first.in_features == 2 * wm.net.feature_dim + 2
    assert first.weight.grad[:, -2:].abs().sum() > 0  # the loss reaches the relevance inputs' weights


def test_windows_one_step_effects_read_the_relevance_of_the_real_next_chain(sibling_data, monkeypatch):
    from tap.collection.datamodule import collate_windows

    batch = collate_windows(list(sibling_data.splits["train"])[:4])
    wm = _relevant_wm().eval()
    seen = {}
    real = wm.relevance_inputs

    def spy(pairs, parents, children):
        seen.update(parents=parents, children=children)
        return real(pairs, parents, children)

    monkeypatch.setattr(wm, "relevance_inputs", spy)
    with torch.no_grad():
        terms, aux = wm.loss_terms(batch, "val")
    B, T1 = batch["reward"].shape
    assert len(seen["parents"]) == (T1 - 1) * B and torch.isfinite(terms["effect"])
    # rows are (start step, window): the first row's parent is window 0's first chain, its child the next one
    assert seen["parents"][0].to_json() == Chain.from_json(batch["chain_json"][0][0]).to_json()
    assert seen["children"][0].to_json() == Chain.from_json(batch["chain_json"][0][1]).to_json()


def test_edit_effect_and_the_search_give_a_relevance_model_its_inputs(monkeypatch):
    from tap.chains import apply_edit
    from tap.errors import TapError
    from tap.planning.halving import imagined_effects

    wm = _relevant_wm().eval()
    task = arithmetic_task(40)
    chain = initial_chain(task.description)
    e1, e2 = Edit("instruction", "instruction_edit", (), "Add the numbers."), Edit("segment", "insert", (0,), "Think.")
    seen = []
    real = wm.relevance_inputs
    monkeypatch.setattr(wm, "relevance_inputs", lambda p, a, b: seen.append(b) or real(p, a, b))
    mean, std = imagined_effects(wm, task, chain, [(e1,), (e1, e2)], task_pairs=3)
    assert mean.shape == std.shape == (2, 2) and torch.isfinite(mean).all()
    # the plan's child is the real chain after both edits, in order
    assert seen[1][0].to_json() == apply_edit(apply_edit(chain, e1), e2).to_json()
    monkeypatch.setattr(wm, "relevance_inputs", lambda p, a, b: real(p, a, b) + 1.0)
    shifted, _ = imagined_effects(wm, task, chain, [(e1,), (e1, e2)], task_pairs=3)
    assert not torch.allclose(shifted, mean)  # the search's reading depends on them
    with torch.no_grad():
        lat = wm.encode_chains([chain], task.description, task_pair_texts(task, 3))
        parent = wm.observe(lat)
        actions, scales = wm.embed_edits([e1])
        child = wm.imagine(parent, actions.unsqueeze(1), scales.unsqueeze(1))[0]
        with pytest.raises(TapError, match="relevance"):
            wm.edit_effect(parent, child)


def test_a_relevance_model_trains_from_the_cli_and_its_checkpoint_rebuilds_it(synthetic_data, tmp_path, monkeypatch):
    from pathlib import Path

    from tap.cli import main
    from tap.planning.rank import rank_edits
    from tap.systems import WorldModel

    monkeypatch.setattr("sys.argv", ["train.py"])
    config = Path(__file__).resolve().parents[2] / "configs" / "world_model.yaml"
    cli = main(["fit", "--config", str(config), *synthetic_data, "--model.init_args.encoder=hash",
                "--model.init_args.relevance=true", "--trainer.fast_dev_run=true"])
    assert cli.trainer.state.finished and cli.model.hparams.relevance
    path = tmp_path / "wm.ckpt"
    cli.trainer.save_checkpoint(path)
    wm = WorldModel.from_checkpoint(path)
    assert wm.hparams.relevance and wm.net.heads.effect.extra_dim == 2
    task = arithmetic_task(40)
    chain = initial_chain(task.description)
    edits = [Edit("instruction", "instruction_edit", (), "Add the numbers."), Edit("segment", "insert", (0,), "Think.")]
    ranked = rank_edits(wm, task, chain, edits, task_pairs=3)
    assert len(ranked) == 2 and all(r.std >= 0 for r in ranked)
