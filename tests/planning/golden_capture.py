"""Capture the searches' trajectories on the rule LLM (run once before a refactor; the test replays them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from tests.helpers import RuleLLM, arithmetic_task, tiny_world_model

OUT = Path(__file__).parent / "golden"


def golden_world_model():
    """The tiny world model with a non-trivial operation prior, so that the prior's ranking matters."""
    wm = tiny_world_model().eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        wm.op_delta.copy_(torch.randn(wm.op_delta.shape, generator=g) * 0.05)
    wm.requires_grad_(False)
    return wm


def trajectory(result) -> dict:
    """What a seed fixes: every record (chain, calls, accuracy, acceptance) and the final chain."""
    return {"final_chain": result.final_chain.to_dict(), "edits": result.edits,
            "records": [{"note": r.note, "calls": r.calls, "examples": r.examples, "accuracy": r.accuracy,
                         "accepted": r.accepted, "chain": r.chain} for r in result.records]}


def main() -> None:
    from tap.planning import PlanConfig, Planner

    task = arithmetic_task(80)
    cases = {"default": ("prior-sh", 0.0), "model": ("sh", 0.0), "random": ("random-sh", 0.0),
             "readable": ("prior-sh", 0.1)}
    for preset, (method, fluency_weight) in cases.items():
        for seed in (0, 1):
            wm = golden_world_model()
            planner = Planner(None if method == "random-sh" else wm, llm=RuleLLM(), config=PlanConfig(
                method=method, fluency_weight=fluency_weight, menu=24, eval_examples=16, test_examples=0))
            result = planner.optimize(task, budget_calls=200, seed=seed, progress=False)
            (OUT / f"{preset}-s{seed}.json").write_text(json.dumps(trajectory(result), indent=0, sort_keys=True))
            print(preset, seed, result.final_search, len(result.records), file=sys.stderr)


if __name__ == "__main__":
    main()
