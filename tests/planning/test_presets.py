"""The presets: each replays the trajectory the search made before the cleanup (golden files, captured with the
old composite settings on the rule LLM), settings are checked and overridable by name, and runs record them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tap.errors import TapError
from tap.planning import PRESETS, SEARCH_DEFAULTS, PlanConfig, Planner, resolve
from tap.planning.presets import parse_overrides
from tests.helpers import RuleLLM, arithmetic_task, tiny_world_model

GOLDEN = Path(__file__).parent / "golden"


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


def run_preset(preset: str, seed: int):
    wm = None if preset == "random" else golden_world_model()
    planner = Planner(wm, llm=RuleLLM(), config=PlanConfig(preset=preset, settings={"menu": 24}, eval_examples=16,
                                                           test_examples=0))
    return planner.optimize(arithmetic_task(80), budget_calls=200, seed=seed, progress=False)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("seed", [0, 1])
def test_every_preset_replays_the_trajectory_recorded_before_the_cleanup(preset, seed):
    result = run_preset(preset, seed)
    want = json.loads((GOLDEN / f"{preset}-s{seed}.json").read_text())
    got = json.loads(json.dumps(trajectory(result), sort_keys=True))
    assert got["records"] == want["records"]
    assert got["final_chain"] == want["final_chain"] and got["edits"] == want["edits"]


def test_the_presets_differ_from_each_other():
    finals = {p: json.loads((GOLDEN / f"{p}-s0.json").read_text())["records"] for p in PRESETS}
    assert len({json.dumps(r) for r in finals.values()}) == len(PRESETS)


def test_a_run_records_its_preset_and_every_resolved_setting():
    result = run_preset("random", 0)
    assert result.config["preset"] == "random" and result.method == "random-sh"
    assert set(result.config["settings"]) == set(SEARCH_DEFAULTS)
    assert result.config["settings"]["ranker"] == "random" and result.config["settings"]["menu"] == 24


def test_overrides_are_typed_and_unknown_keys_and_presets_are_named():
    assert parse_overrides(["hedge=false", "enter=4", "adapt=0.2"]) == {"hedge": False, "enter": 4, "adapt": 0.2}
    assert resolve("default", {"enter": 4})["enter"] == 4
    with pytest.raises(TapError, match="unknown search setting 'carry'.*compose"):
        resolve("default", ["carry=2"])
    with pytest.raises(TapError, match="unknown preset 'prior-sh'.*default.*readable"):
        resolve("prior-sh")
    with pytest.raises(TapError, match="'enter' takes a int"):
        parse_overrides(["enter=four"])
    with pytest.raises(TapError, match="key=value"):
        parse_overrides(["hedge"])


def test_settings_that_do_not_fit_together_are_refused_before_any_call():
    llm = RuleLLM()
    with pytest.raises(TapError, match="hedge weighs a ranker"):
        Planner(None, llm=llm, config=PlanConfig(preset="random", settings=["hedge=true"]))
    with pytest.raises(TapError, match="needs a world model"):
        Planner(None, llm=llm, config=PlanConfig(preset="default"))
    with pytest.raises(TapError, match="op_bonus.*needs adapt"):
        resolve("default", ["adapt=0"])
    assert llm.generated == 0 and llm.scored == 0
