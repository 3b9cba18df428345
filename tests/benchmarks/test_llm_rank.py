"""The frozen-LLM reading benchmark: the state cache (computes each prompt once, persists, survives a restart), the
edit features' order, the ridge against a naive least-squares solve, the leave-one-task-out penalty choice, the
zero-shot scorer breaking only the prior's ties, the LLM kernel, and the recorded command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from tap.chains.chain import Chain, Demo
from tests.helpers import import_benchmark


@pytest.fixture(scope="module")
def lr():
    return import_benchmark("llm_rank")


class CountingLLM:
    """A stand-in backend: a prompt's state is (its length, its count of 'a'); counts what it was asked."""

    name = "fake/llm@fp32"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def prompt_states(self, prompts):
        self.asked += list(prompts)
        return torch.tensor([[float(len(p)), float(p.count("a"))] for p in prompts])


def test_state_cache_computes_each_prompt_once_and_persists(lr, tmp_path):
    llm = CountingLLM()
    cache = lr.StateCache(llm, path=tmp_path / "s.pt", chunk=2)
    got = cache(["aa", "b", "aa", "ccc"])
    assert got.tolist() == [[2.0, 2.0], [1.0, 0.0], [2.0, 2.0], [3.0, 0.0]]
    assert sorted(llm.asked) == ["aa", "b", "ccc"]  # each once, though "aa" came twice
    again = lr.StateCache(CountingLLM(), path=tmp_path / "s.pt")  # a restart reads the file, no model
    assert torch.equal(again(["ccc", "aa"]), got[[3, 0]]) and again.llm.asked == []
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically


def test_state_cache_saves_every_few_chunks_and_at_the_end(lr, tmp_path, monkeypatch):
    cache = lr.StateCache(CountingLLM(), path=tmp_path / "s.pt", chunk=1, save_every=2)
    saves = []
    monkeypatch.setattr(cache, "_save", lambda: saves.append(len(cache.rows)))
    cache(["a", "bb", "ccc", "dddd", "eeeee"])
    assert saves == [2, 4, 5]  # after chunks 2 and 4, and after the last


def test_edit_features_are_child_minus_parent_in_sibling_order(lr):
    parent = Chain(instruction="Add.")
    kids = [Chain(instruction="Add the numbers."), Chain(instruction="Add.", demos=(Demo(0, "1+1", "2"),))]
    groups = [[{"chain": parent.to_json(), "next_chain": k.to_json()} for k in kids]]
    fmt = lambda msgs: "|".join(m["content"] for m in msgs)  # noqa: E731
    states = lambda ps: torch.tensor([[float(len(p))] for p in ps])  # noqa: E731
    x = lr.edit_features(groups, states, fmt)
    want = [len(lr.chain_prompt(fmt, k.to_json())) - len(lr.chain_prompt(fmt, parent.to_json())) for k in kids]
    assert x.dtype == torch.float64 and x[:, 0].tolist() == want


def test_ridge_matches_a_naive_penalised_solve(lr):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(40, generator=g, dtype=torch.float64)
    w, b = lr.ridge(x, y, 2.0)
    # naive: augment with an unpenalised intercept column and solve the normal equations
    xa = torch.cat([x, torch.ones(40, 1, dtype=torch.float64)], 1)
    reg = torch.diag(torch.tensor([2.0, 2.0, 2.0, 0.0], dtype=torch.float64))
    full = torch.linalg.solve(xa.T @ xa + reg, xa.T @ y)
    assert torch.allclose(w, full[:3]) and torch.allclose(b, full[3])


def test_penalty_is_chosen_by_held_out_tasks(lr):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 2, generator=g, dtype=torch.float64)
    task = torch.arange(60) % 3
    signal = x[:, 0] * 0.5  # the same slope on every task: a small penalty carries it across
    lam, errors = lr.choose_penalty(x, signal, task)
    assert lam == 1.0 and set(errors) == set(lr.PENALTIES)
    noise = torch.randn(60, generator=g, dtype=torch.float64)  # nothing shared between tasks: shrink it all
    lam, errors = lr.choose_penalty(x, noise, task)
    assert errors[lam] <= errors[1.0] and lam > 1.0


def test_ridge_scorer_only_breaks_the_priors_ties(lr):
    pool = {"real": torch.tensor([0.1, 0.3, -0.1, 0.5]), "prior": torch.zeros(4), "task": torch.tensor([0, 0, 1, 1])}
    pool_x = torch.tensor([[0.0], [1.0], [-1.0], [2.0]], dtype=torch.float64)  # the change grows with x
    test = {"prior": torch.tensor([0.2, 0.2, 0.1], dtype=torch.float64)}
    test_x = torch.tensor([[0.0], [1.0], [5.0]], dtype=torch.float64)
    score, info = lr.ridge_scores(pool, pool_x, test, test_x)
    assert score[1] > score[0]  # tied on the prior: larger x first
    assert score[2] < score[0]  # the prior's order stands whatever the ridge says
    assert info["pool_edits"] == 4 and info["penalty"] in lr.PENALTIES


def test_the_llm_kernel_reads_the_llm_features(lr):
    orank = import_benchmark("online_rank")
    p = {"llm": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.01]], dtype=torch.float64)}
    k = orank.kernel(p, torch.tensor([0]), torch.tensor([1, 2]), "llm", 1.0)
    assert k[0, 1] > k[0, 0]  # the nearly parallel feature is the more alike


def test_recorded_command_names_every_option_not_at_its_default(lr):
    args = argparse.Namespace(tags=["fam"], samples=[0, 1], k=[2, 8], model="smollm2", pool_config=lr.POOL,
                              out=lr.OUT)
    assert lr.command(args) == "python benchmarks/llm_rank.py --tags fam --samples 0 1 --k 2 8"
    args.model, args.out = "qwen-coder", Path("/tmp/x.json")
    assert lr.command(args).endswith("--k 2 8 --model qwen-coder --out /tmp/x.json")
    with pytest.raises(SystemExit, match="--k"):
        lr.main(["--tags", "fam", "--k", "-1"])
