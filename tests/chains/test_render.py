import pytest

from tap.chains.chain import AnswerFormat, Chain, Demo
from tap.chains.render import answer_prefix, plain_prompt, prompt_chars, render_messages, system_text, user_text
from tap.errors import ChainError

CHAIN = Chain(
    instruction="  Answer the question.  ",
    answer_format=AnswerFormat(" End with 'Answer: <answer>'. ", "Answer: {answer}"),
    steps=("Read it.", "Solve it."),
    demos=(Demo(3, "Is 1 + 1 = 2?", "True"), Demo(7, "Is 2 + 2 = 5?", "False")),
)


def test_system_text_has_instruction_numbered_steps_and_format():
    assert system_text(CHAIN) == (
        "Answer the question.\n\nSteps:\n1. Read it.\n2. Solve it.\n\nEnd with 'Answer: <answer>'."
    )


def test_system_text_parts_are_optional():
    assert system_text(Chain("Go.")) == "Go."
    assert system_text(Chain("", steps=("A.",))) == "Steps:\n1. A."
    assert system_text(Chain("", AnswerFormat("Spec."))) == "Spec."
    assert system_text(Chain("", demos=(Demo(0, "q", "a"),))) == ""


def test_user_text():
    assert user_text("Q?") == "Q?"
    assert user_text("Q?", ("True", "False")) == "Q?\nOptions: True, False"


def test_render_messages_full():
    assert render_messages(CHAIN, "Is 3 + 3 = 6?", ("True", "False")) == [
        {"role": "system", "content": system_text(CHAIN)},
        {"role": "user", "content": "Is 1 + 1 = 2?\nOptions: True, False"},
        {"role": "assistant", "content": "Answer: True"},
        {"role": "user", "content": "Is 2 + 2 = 5?\nOptions: True, False"},
        {"role": "assistant", "content": "Answer: False"},
        {"role": "user", "content": "Is 3 + 3 = 6?\nOptions: True, False"},
    ]


def test_render_messages_without_choices_has_no_options():
    messages = render_messages(CHAIN, "What is 3 + 3?")
    assert [m["content"] for m in messages[1:]] == [
        "Is 1 + 1 = 2?", "Answer: True", "Is 2 + 2 = 5?", "Answer: False", "What is 3 + 3?"
    ]


def test_render_messages_without_system_block():
    chain = Chain("", AnswerFormat("", "The answer is {answer}."), demos=(Demo(0, "q", "a"),))
    assert render_messages(chain, "r") == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "The answer is a."},
        {"role": "user", "content": "r"},
    ]


def test_render_is_deterministic():
    first = render_messages(CHAIN, "Q?", ("a", "b"))
    assert all(render_messages(CHAIN, "Q?", ("a", "b")) == first for _ in range(3))
    rebuilt = Chain.from_json(CHAIN.to_json())
    assert render_messages(rebuilt, "Q?", ("a", "b")) == first


def test_render_validates_the_chain():
    with pytest.raises(ChainError, match="the chain is empty"):
        render_messages(Chain(), "Q?")
    with pytest.raises(ChainError, match="appears twice"):
        render_messages(Chain("x", demos=(Demo(1, "q", "a"), Demo(1, "q", "a"))), "Q?")


def test_plain_prompt():
    messages = render_messages(CHAIN, "Is 3 + 3 = 6?", ("True", "False"))
    assert plain_prompt(messages) == (
        system_text(CHAIN) + "\n\n"
        "Q: Is 1 + 1 = 2?\nOptions: True, False\nA: Answer: True\n\n"
        "Q: Is 2 + 2 = 5?\nOptions: True, False\nA: Answer: False\n\n"
        "Q: Is 3 + 3 = 6?\nOptions: True, False\nA:"
    )


def test_plain_prompt_question_only():
    assert plain_prompt(render_messages(Chain("Go."), "Q?")) == "Go.\n\nQ: Q?\nA:"


def test_render_with_chat_template(tiny_llm):
    chain = Chain("Be brief.", demos=(Demo(1, "2+2?", "4"),))
    prompt = tiny_llm.format_chat(render_messages(chain, "3+3?"))
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n"
        "<|im_start|>user\n3+3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{answer}", ("", "")),
        ("Answer: {answer}", ("Answer: ", "")),
        ("The answer is {answer}.", ("The answer is ", ".")),
    ],
)
def test_answer_prefix(template, expected):
    assert answer_prefix(Chain("x", AnswerFormat("", template))) == expected


def test_prompt_chars_counts_the_system_block_and_demonstration_turns_only():
    bare = Chain(instruction="Answer.")
    assert prompt_chars(bare) == len("Answer.")
    demo = Chain(instruction="Answer.", demos=(Demo(1, "in", "out"),), answer_format=AnswerFormat("", "<{answer}>"))
    assert prompt_chars(demo) == len("Answer.") + len("in") + len("<out>")  # the demo's answer in the format
    assert prompt_chars(demo) - prompt_chars(bare) == 7  # what adding the demonstration adds
