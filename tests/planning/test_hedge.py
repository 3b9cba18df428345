"""The ranker's measured skill against uniform draws sets the random share (tap.planning.hedge)."""

from __future__ import annotations

import pytest

from tap.env import Evaluation, ExampleResult
from tap.errors import TapError
from tap.planning.hedge import RankerSkill, paired_gain


def _eval(correct: list[bool], gold: float, uids=None) -> Evaluation:
    uids = uids or list(range(len(correct)))
    return Evaluation([ExampleResult(u, "", "", c, True, gold) for u, c in zip(uids, correct)], 0, 0, "val",
                      "generate", 0)


def test_paired_gain_is_accuracy_plus_weighted_gold_probability_on_the_same_examples():
    child, parent = _eval([True, True, False, False], 0.6), _eval([True, False, False, False], 0.2)
    assert paired_gain(child, parent, 0.25) == pytest.approx(0.25 + 0.25 * 0.4)
    with pytest.raises(TapError, match="same examples"):
        paired_gain(child, _eval([True] * 4, 0.2, uids=[9, 8, 7, 6]), 0.25)


def test_the_share_starts_at_the_search_explore_share_and_follows_the_evidence():
    skill = RankerSkill(0.125)
    assert skill.probability() is None and skill.random_slots(8) == 1  # 7 ranked, as without hedging
    skill.add("ranked", 0.5)
    assert skill.random_slots(8) == 1  # no random entrant measured yet
    for _ in range(6):
        skill.add("ranked", 0.5)
        skill.add("random", 0.0)
    assert skill.probability() > 0.99 and skill.random_slots(8) == 1  # at least one random entrant stays
    worse = RankerSkill(0.125)
    for _ in range(6):
        worse.add("ranked", -0.25)
        worse.add("random", 0.25)
    assert worse.probability() < 0.01 and worse.random_slots(8) == 7  # at least one ranked entrant stays
    even = RankerSkill(0.125)
    for g in (0.0, 0.25, -0.25):
        even.add("ranked", g)
        even.add("random", g)
    assert even.probability() == pytest.approx(0.5) and even.random_slots(8) == 4
    assert even.random_slots(1) == 0 and even.summary()["p_ranked_better"] == 0.5


def test_equal_gains_do_not_look_certain():
    skill = RankerSkill(0.125, floor=0.01)
    skill.add("ranked", 0.05)
    skill.add("random", 0.0)  # one each, no spread: the floor keeps the verdict soft
    assert 0.5 < skill.probability() < 0.8


def test_bad_settings_are_named():
    with pytest.raises(TapError, match="floor"):
        RankerSkill(0.125, floor=0.0)
    with pytest.raises(TapError, match="explore"):
        RankerSkill(1.5)
    with pytest.raises(TapError, match="'ranked' or 'random'"):
        RankerSkill(0.125).add("carried", 0.1)


def test_two_other_kinds_can_be_weighed():
    mix = RankerSkill(0.125, arms=("ranked", "composed"))
    assert mix.random_slots(7) == 1  # one composed entrant of 7 ranked slots before any evidence
    for _ in range(6):
        mix.add("ranked", 0.0)
        mix.add("composed", 0.5)
    assert mix.probability() < 0.01 and mix.random_slots(7) == 6
    assert set(mix.summary()) == {"ranked", "composed", "ranked_mean", "composed_mean", "p_ranked_better"}
    with pytest.raises(TapError, match="'ranked' or 'composed'"):
        mix.add("random", 0.1)
    with pytest.raises(TapError, match="arms"):
        RankerSkill(0.125, arms=("ranked", "ranked"))

