import json

import pytest

from tap.chains import GENERIC_INSTRUCTION, initial_chain
from tap.chains.chain import AnswerFormat, Chain, Demo
from tap.errors import ChainError

FULL = Chain(
    instruction="Answer the question.",
    answer_format=AnswerFormat("End with 'Answer: <answer>'.", "Answer: {answer}"),
    steps=("Read the question.", "Work it out."),
    demos=(Demo(3, "What is 1 + 1?", "2"), Demo(5, "Wie viel ist 2 + 2? ü", "4")),
)


def test_validate_returns_the_chain():
    assert FULL.validate() is FULL


@pytest.mark.parametrize(
    "chain",
    [
        Chain("Answer."),
        Chain("", steps=("Think.",)),
        Chain("", demos=(Demo(0, "q", "a"),)),
        Chain("", AnswerFormat("Reply with a number.")),
    ],
)
def test_validate_any_one_part_is_enough(chain):
    assert chain.validate() is chain


@pytest.mark.parametrize("chain", [Chain(), Chain("   \n"), Chain(" ", AnswerFormat("  ", "Answer: {answer}"))])
def test_validate_empty_chain(chain):
    with pytest.raises(ChainError, match="the chain is empty"):
        chain.validate()


@pytest.mark.parametrize("steps", [("Think.", ""), ("  ",)])
def test_validate_empty_step(steps):
    with pytest.raises(ChainError, match="a chain step is empty"):
        Chain("Answer.", steps=steps).validate()


def test_validate_duplicate_demo():
    chain = Chain("Answer.", demos=(Demo(1, "q", "a"), Demo(2, "r", "b"), Demo(1, "q", "a")))
    with pytest.raises(ChainError, match=r"a demonstration appears twice \(uids \[1, 2, 1\]\)"):
        chain.validate()


def test_segments_and_words():
    assert FULL.segments == ("Answer the question.", "Read the question.", "Work it out.")
    assert FULL.words(0) == ["Answer", "the", "question."]
    assert FULL.words(2) == ["Work", "it", "out."]
    with pytest.raises(IndexError):
        FULL.words(3)
    with pytest.raises(IndexError):
        FULL.words(-1)


def test_with_segment_returns_a_new_chain():
    assert FULL.with_segment(0, "New.").instruction == "New."
    assert FULL.with_segment(2, "Done.").steps == ("Read the question.", "Done.")
    assert FULL.steps == ("Read the question.", "Work it out.")


def test_json_round_trip():
    text = FULL.to_json()
    assert Chain.from_json(text) == FULL
    assert json.loads(text) == {
        "instruction": "Answer the question.",
        "answer_format": {"spec": "End with 'Answer: <answer>'.", "template": "Answer: {answer}"},
        "steps": ["Read the question.", "Work it out."],
        "demos": [{"uid": 3, "input": "What is 1 + 1?", "output": "2"},
                  {"uid": 5, "input": "Wie viel ist 2 + 2? ü", "output": "4"}],
    }
    assert "ü" in text  # ensure_ascii=False
    assert FULL.to_json() == text  # deterministic (sorted keys)


@pytest.mark.parametrize("data,message", [
    ({"instruction": 5}, r"'instruction' must be text, got int 5"),
    ({"steps": "Think."}, r"'steps' must be a list of texts, got 'Think.'"),
    ({"step": ["Think."]}, r"unknown key\(s\) \['step'\]"),
    ({"answer_format": "Answer: {answer}"}, r"'answer_format' must be an object"),
    ({"answer_format": {"templat": "{answer}"}}, r"'answer_format' must be an object"),
    ({"demos": [{"uid": "x", "input": "a", "output": "b"}]}, r"'demos' must be a list of objects"),
    ([1, 2], r"a chain must be a JSON object, got list"),
])
def test_from_dict_checks_types_and_keys_and_shows_the_shape(data, message):
    with pytest.raises(ChainError, match=message) as err:
        Chain.from_dict(data)
    assert '"steps": ["text", ...]' in str(err.value)


def test_from_dict_defaults():
    assert Chain.from_dict({"instruction": "x"}) == Chain("x")
    assert Chain.from_dict({}) == Chain()


def test_from_json_invalid_json():
    with pytest.raises(ChainError, match="chain is not valid JSON"):
        Chain.from_json("{instruction: x")


@pytest.mark.parametrize(
    "data",
    [
        {"instruction": "x", "demos": [{"uid": 1, "input": "q"}]},
        {"instruction": "x", "demos": [{"uid": 1, "input": "q", "output": "a", "extra": 1}]},
        {"instruction": "x", "answer_format": {"spec": "s", "template": "{answer}", "marker": "A:"}},
    ],
)
def test_from_json_malformed_fields(data):
    with pytest.raises(ChainError, match="malformed chain JSON"):
        Chain.from_json(json.dumps(data))


def test_from_json_bad_template():
    with pytest.raises(ChainError, match="must contain '{answer}' exactly once"):
        Chain.from_json(json.dumps({"instruction": "x", "answer_format": {"template": "Answer:"}}))


@pytest.mark.parametrize("text", ["[]", '"chain"', "5"])
def test_from_json_not_an_object(text):
    with pytest.raises(ChainError):
        Chain.from_json(text)


@pytest.mark.parametrize("template", ["Answer:", "{answer} {answer}", "", "{Answer}"])
def test_answer_format_template_errors(template):
    with pytest.raises(ChainError, match="exactly once"):
        AnswerFormat("spec", template)


@pytest.mark.parametrize(
    ("template", "marker", "rendered"),
    [
        ("{answer}", "", "42"),
        ("Answer: {answer}", "Answer:", "Answer: 42"),
        ("The answer is {answer}.", "The answer is", "The answer is 42."),
        ("  Final answer:  {answer}", "Final answer:", "  Final answer:  42"),
    ],
)
def test_answer_format_marker_and_render(template, marker, rendered):
    fmt = AnswerFormat("", template)
    assert fmt.marker == marker
    assert fmt.render("42") == rendered


def test_describe():
    assert FULL.describe().splitlines() == [
        "instruction: 'Answer the question.'",
        "format: \"End with 'Answer: <answer>'.\" (template 'Answer: {answer}')",
        "step 1: Read the question.",
        "step 2: Work it out.",
        "demo 1 (train uid 3): 'What is 1 + 1?' -> '2'",
        "demo 2 (train uid 5): 'Wie viel ist 2 + 2? ü' -> '4'",
    ]


def test_initial_chain():
    assert initial_chain("  Count the objects.\n") == Chain("Count the objects.")
    assert initial_chain("  ") == Chain(GENERIC_INSTRUCTION) == Chain("Respond to the input.")
