import math

import pytest
import torch
import torch.nn.functional as F

from tap.losses.contrastive import ResponseInfoNCE, distance_alignment, response_distance


def _naive_distance(correct, gold, mask, group):
    n = correct.shape[0]
    dist = torch.zeros(n, n)
    valid = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            shared = [e for e in range(correct.shape[1]) if mask[i, e] and mask[j, e]]
            if i == j or group[i] != group[j] or not shared:
                continue
            valid[i, j] = True
            dist[i, j] = sum(0.5 * (abs(correct[i, e] - correct[j, e]) + abs(gold[i, e] - gold[j, e]))
                             for e in shared) / len(shared)
    return dist, valid


def _naive_infonce(z, dist, valid, t, threshold):
    losses = []
    for i in range(z.shape[0]):
        positives = [j for j in range(z.shape[0]) if valid[i, j] and dist[i, j] <= threshold]
        if not positives:
            continue
        denom = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(z.shape[0]) if a != i)
        losses.append(-sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denom) for p in positives) / len(positives))
    return sum(losses) / len(losses), len(losses) / z.shape[0]


def _batch(seed=0, n=10, e=6):
    g = torch.Generator().manual_seed(seed)
    correct = (torch.rand(n, e, generator=g) > 0.5).float()
    correct[1] = correct[0]  # guarantee some close pairs
    gold = torch.rand(n, e, generator=g)
    gold[1] = gold[0] + 0.01
    mask = torch.ones(n, e, dtype=torch.bool)
    mask[-1, 3:] = False
    group = torch.tensor([0] * 6 + [1] * 4)
    z = F.normalize(torch.randn(n, 8, generator=g), dim=-1)
    return z, correct, gold, mask, group


def test_response_distance_matches_naive_loop():
    _, correct, gold, mask, group = _batch()
    dist, valid = response_distance(correct, gold, mask, group)
    ndist, nvalid = _naive_distance(correct, gold, mask, group)
    assert torch.equal(valid, nvalid)
    assert torch.allclose(dist[valid], ndist[valid], atol=1e-6)
    assert dist[valid].min() >= 0 and dist[valid].max() <= 1


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.6])
def test_infonce_matches_naive_loop(threshold):
    z, correct, gold, mask, group = _batch(seed=1)
    dist, valid = response_distance(correct, gold, mask, group)
    loss, rate = ResponseInfoNCE(0.2, threshold)(z, dist, valid)
    expected, expected_rate = _naive_infonce(z, dist, valid, 0.2, threshold)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert rate.item() == pytest.approx(expected_rate)


def test_infonce_falls_when_positives_move_together():
    z, correct, gold, mask, group = _batch(seed=2)
    dist, valid = response_distance(correct, gold, mask, group)
    loss_fn = ResponseInfoNCE(0.1, 0.05)
    before, _ = loss_fn(z, dist, valid)
    z2 = z.clone()
    z2[1] = z2[0]  # 0 and 1 are the response-alike pair
    after, _ = loss_fn(z2, dist, valid)
    assert after < before


def test_no_positives_gives_zero_with_gradient():
    z = F.normalize(torch.randn(4, 3), dim=-1).requires_grad_()
    dist = torch.ones(4, 4)
    valid = torch.ones(4, 4, dtype=torch.bool)
    loss, rate = ResponseInfoNCE(0.1, 0.05)(z, dist, valid)
    assert loss.item() == 0 and rate.item() == 0
    loss.backward()


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="temperature"):
        ResponseInfoNCE(0.0)
    with pytest.raises(ValueError, match="threshold"):
        ResponseInfoNCE(0.1, 1.5)


def test_distance_alignment_is_zero_when_distances_agree():
    z = F.normalize(torch.randn(5, 4), dim=-1)
    latent = (1 - z @ z.T) / 2
    valid = ~torch.eye(5, dtype=torch.bool)
    assert distance_alignment(z, latent, valid).item() == pytest.approx(0.0, abs=1e-10)
    assert distance_alignment(z, latent + 0.1, valid).item() == pytest.approx(0.01, rel=1e-4)
