import pytest
import torch
import torch.nn.functional as F

from tap.models import WORLD_MODELS, EditEmbedder, HashText
from tap.models.encoder import LATENT_KEYS, ChainEncoderNet
from tap.models.heads import TwoHot, symexp, symlog

B, T, D, A = 5, 3, 16, 8


def _net(kind, seed=0):
    """A small world model whose zero-initialised output layers (reward heads, latent residuals) are
    nudged, so that gradients and outputs depend on every input as they do after training."""
    torch.manual_seed(seed)
    heads = {"hidden_dim": 32, "members": 3, "bins": 11}
    if kind == "demo":
        net = WORLD_MODELS[kind](D, A, 32, heads)
    else:
        net = WORLD_MODELS[kind](D, A, deter_dim=24, stoch_dim=6, hidden_dim=32, heads=heads)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def _obs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: F.normalize(torch.randn(B, D, generator=g), dim=-1) for k in LATENT_KEYS}


def _actions(seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = F.one_hot(torch.randint(0, 3, (B, T), generator=g), 3).float()
    return torch.randn(B, T, A, generator=g), scales


@pytest.mark.parametrize("kind", sorted(WORLD_MODELS))
def test_rollout_shapes(kind):
    net = _net(kind)
    state = net.observe(_obs())
    acts, scales = _actions()
    states = net.imagine(state, acts, scales)
    assert len(states) == T
    for s in [state, *states]:
        assert net.features(s).shape == (B, net.feature_dim)
        assert net.reward(s).shape == (B,) and net.uncertainty(s).shape == (B,)
        assert (net.uncertainty(s) >= 0).all()
        lat = net.predict_latents(s)
        assert set(lat) == (set(LATENT_KEYS) if kind == "hierarchical" else {"chain"})
        assert all(v.shape == (B, D) for v in lat.values())
        assert torch.allclose(lat["chain"].norm(dim=-1), torch.ones(B), atol=1e-5)
        assert net.predict_response(s).shape == (B, 5)
    dyn, rep = net.kl(states[0], _obs(1))
    assert dyn.shape == rep.shape == (B,)


@pytest.mark.parametrize("kind", sorted(WORLD_MODELS))
def test_untrained_model_predicts_no_change_in_latents(kind):
    torch.manual_seed(0)
    net = WORLD_MODELS[kind](D, A) if kind == "demo" else WORLD_MODELS[kind](D, A, deter_dim=24, stoch_dim=6)
    obs = _obs()
    acts, scales = _actions()
    last = net.imagine(net.observe(obs), acts, scales)[-1]
    pred = net.predict_latents(last)
    assert "chain" in pred and all(torch.allclose(pred[k], obs[k], atol=1e-6) for k in pred)


@pytest.mark.parametrize("kind", sorted(WORLD_MODELS))
def test_rollout_is_differentiable_in_actions_and_parameters(kind):
    net = _net(kind)
    acts, scales = _actions()
    acts.requires_grad_(True)
    scales.requires_grad_(True)
    states = net.imagine(net.observe(_obs()), acts, scales)
    lat = net.predict_latents(states[-1])["chain"]
    (net.reward(states[-1]).sum() + lat.sum()).backward()
    assert acts.grad is not None and acts.grad.abs().sum() > 0
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0
    if kind == "hierarchical":  # the soft scale choice reaches the levels
        assert scales.grad is not None and scales.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", sorted(WORLD_MODELS))
def test_rollout_is_deterministic_under_a_seed(kind):
    acts, scales = _actions()
    runs = []
    for _ in range(2):
        net = _net(kind, seed=3)
        torch.manual_seed(7)
        states = net.imagine(net.observe(_obs(), sample=True), acts, scales, sample=True)
        runs.append(torch.stack([net.features(s) for s in states]))
    assert torch.equal(runs[0], runs[1])
    other = _net(kind, seed=4)
    assert not torch.equal(runs[0], torch.stack([other.features(s) for s in other.imagine(
        other.observe(_obs()), acts, scales)]))


def test_hierarchical_edit_enters_only_its_level_first():
    """With the edit's scale one-hot on 'token', the instruction GRU gets no action input directly:
    changing the action moves the instruction level only through the bottom-up summary."""
    net = _net("hierarchical")
    state = net.observe(_obs())
    scale = F.one_hot(torch.zeros(B, dtype=torch.long), 3).float()  # SCALES[0] == "token"
    a1, a2 = torch.randn(B, A), torch.randn(B, A)
    s1, s2 = net.step(state, a1, scale), net.step(state, a2, scale)
    assert not torch.allclose(s1["token/h"], s2["token/h"])
    net.up["token"].weight.data.zero_()
    net.up["token"].bias.data.zero_()
    net.up["segment"].weight.data.zero_()
    net.up["segment"].bias.data.zero_()
    s1, s2 = net.step(state, a1, scale), net.step(state, a2, scale)
    assert torch.allclose(s1["instruction/h"], s2["instruction/h"])


def test_two_hot_round_trip():
    codec = TwoHot(bins=41)
    x = torch.tensor([0.0, 0.25, 0.5, 0.9, 1.0])
    enc = codec.encode(x)
    assert torch.allclose(enc.sum(-1), torch.ones(5))
    assert torch.allclose(codec.decode(torch.log(enc.clamp_min(1e-12))), x, atol=1e-4)
    assert torch.allclose(symexp(symlog(x)), x)
    with pytest.raises(ValueError):
        TwoHot(bins=1)


def test_edit_embedder_and_encoder_shapes():
    torch.manual_seed(0)
    emb = EditEmbedder(payload_dim=12, action_dim=A)
    out = emb(torch.tensor([0, 2]), torch.tensor([1, 12]), torch.tensor([[0, 3], [-1, -1]]), torch.randn(2, 12))
    assert out.shape == (2, A)
    enc = ChainEncoderNet(HashText(dim=12), latent_dim=D, hidden_dim=32)
    views = [{"instruction": "Add.", "segments": ["Add.", "Think step by step."], "tokens": "Add. Think step by step."},
             {"instruction": "Add.", "segments": ["Think step by step.", "Add."], "tokens": "Think step by step. Add."}]
    lat = enc(["ctx", "ctx"], views)
    assert all(v.shape == (2, D) for v in lat.values())
    assert not torch.allclose(lat["segment"][0], lat["segment"][1])  # step order matters


def test_hash_text_memoises_only_when_frozen():
    text = HashText(dim=8)
    text(["a b", "c"])
    assert text._memo == {}  # trainable and grad enabled: nothing memoised
    text.requires_grad_(False)
    first = text(["a b", "c", "a b"])
    assert set(text._memo) == {"a b", "c"} and torch.equal(first[0], first[2])
