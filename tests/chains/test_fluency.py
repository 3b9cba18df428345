"""The fluency score: what it reads, and that it ranks word salad below the sentence it came from."""

import math

from tap.chains.chain import Chain
from tap.chains.fluency import PREFIX, chain_text, fluency
from tests.helpers import RuleLLM


def test_chain_text_is_instruction_and_steps():
    chain = Chain("Add the numbers.", steps=("Carry the tens.", "  "))
    assert chain_text(chain) == "Add the numbers.\nCarry the tens."


def test_fluency_scores_through_the_llm_after_a_neutral_prefix():
    llm = RuleLLM()
    scores = fluency(llm, [Chain("Add the numbers."), Chain("numbers the Add simple word.")])
    assert llm.score_batches == [[(PREFIX, "Add the numbers."), (PREFIX, "numbers the Add simple word.")]]
    assert all(isinstance(s, float) and not math.isnan(s) for s in scores)
