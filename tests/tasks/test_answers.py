import pytest

from tap.tasks.answers import Judgement, answer_region, find_numbers, judge, normalize, parse_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("twenty-one", [21.0]),
        ("three", [3.0]),
        ("Three apples and twenty one pears", [3.0, 21.0]),
        ("one hundred five", [105.0]),
        ("two thousand three hundred", [2300.0]),
        ("1,000 people", [1000.0]),
        ("it is -3.5 degrees", [-3.5]),
        ("+7 and -2", [7.0, -2.0]),
        ("80 + 29 = 109.", [80.0, 29.0, 109.0]),
        ("seven then 8 then nine", [7.0, 8.0, 9.0]),
        ("no numbers here", []),
        ("", []),
    ],
)
def test_find_numbers(text, expected):
    assert find_numbers(text) == expected


def test_find_numbers_keeps_a_spoken_count_apart():
    assert find_numbers("one, two, three") == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("109", 109.0),
        (" 109. ", 109.0),
        ("three", 3.0),
        ("Twenty-One", 21.0),
        ("one hundred", 100.0),
        ("1,000", 1000.0),
        ("-2", -2.0),
        ("+4.25", 4.25),
        ("hundred", None),
        ("", None),
        ("   ", None),
        ("3 apples", None),
        ("yes", None),
        ("twenty apples", None),
    ],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Answer, is: A cat!", "answer is cat"),
        ("an apple", "apple"),
        ("  New-York. ", "newyork"),
        ("Theory", "theory"),
        ("", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_answer_region_after_last_marker_case_insensitive():
    assert answer_region("answer: 3\nso ANSWER:  42 ", "Answer:") == ("42", True)


def test_answer_region_marker_missing_is_whole_reply():
    assert answer_region("  it is 42\n", "Answer:") == ("it is 42", False)


def test_answer_region_without_marker_counts_as_found():
    assert answer_region("  it is 42\n", "") == ("it is 42", True)


# --- numeric targets ------------------------------------------------------------------------


def test_numeric_without_marker_takes_last_number():
    assert judge("80 + 29 = 109", ["109"], [], set(), "") == Judgement("109", True, True)


def test_numeric_without_marker_wrong_last_number():
    assert judge("109 is not it, it is 110", ["109"], [], set(), "") == Judgement("110", False, True)


def test_numeric_with_marker_takes_first_number_after_marker():
    reply = "80 + 29 = 109. Answer: 109, since 80 + 29"
    assert judge(reply, ["109"], [], set(), "Answer:") == Judgement("109", True, True)


def test_numeric_marker_ignored_falls_back_to_last_number_and_is_not_compliant():
    assert judge("80 + 29 = 109", ["109"], [], set(), "Answer:") == Judgement("109", True, False)


def test_numeric_number_words_in_reply():
    assert judge("The answer is twenty-one.", ["21"], [], set(), "The answer is") == Judgement("21", True, True)


def test_numeric_word_target_and_digit_reply():
    assert judge("3", ["three"], [], set(), "") == Judgement("3", True, True)


def test_numeric_commas_and_signs():
    assert judge("Answer: 1,000", ["1000"], [], set(), "Answer:") == Judgement("1000", True, True)
    assert judge("Answer: -3.5", ["-3.5"], [], set(), "Answer:") == Judgement("-3.5", True, True)


def test_numeric_any_target_accepted():
    assert judge("Answer: 4", ["5", "4"], [], set(), "Answer:") == Judgement("4", True, True)


def test_numeric_no_number_is_wrong_and_not_compliant():
    assert judge("Answer: I do not know", ["5"], [], set(), "Answer:") == Judgement("", False, False)


# --- multiple choice answered by generation ----------------------------------------------------


def test_choice_word_boundaries_implausible_vs_plausible():
    choices = ["plausible", "implausible"]
    assert judge("This is implausible.", [], choices, {1}, "") == Judgement("implausible", True, True)
    assert judge("This is plausible.", [], choices, {1}, "") == Judgement("plausible", False, True)


def test_choice_earliest_mention_wins():
    choices = ["True", "False"]
    assert judge("False, not True", [], choices, {0}, "") == Judgement("False", False, True)
    assert judge("True, not False", [], choices, {0}, "") == Judgement("True", True, True)


def test_choice_longer_option_wins_a_tie_at_the_same_position():
    choices = ["no", "no way"]
    assert judge("No way!", [], choices, {1}, "") == Judgement("no way", True, True)


def test_choice_after_marker_only():
    reply = "Options were True or False. Answer: False"
    assert judge(reply, [], ["True", "False"], {1}, "Answer:") == Judgement("False", True, True)


def test_choice_without_marker_is_not_compliant():
    assert judge("False", [], ["True", "False"], {1}, "Answer:") == Judgement("False", True, False)


def test_choice_none_named():
    assert judge("Maybe.", [], ["True", "False"], {1}, "") == Judgement("", False, False)


def test_choice_matching_is_normalised():
    assert judge("(B) the Red-Car", [], ["red car", "redcar"], {1}, "") == Judgement("redcar", True, True)


# --- text targets -----------------------------------------------------------------------------


def test_text_first_line_normalised():
    reply = "\n  The New York.\nBecause it is big."
    assert judge(reply, ["new york"], [], set(), "") == Judgement("The New York.", True, True)


def test_text_prefix_of_longer_reply_counts():
    assert judge("Paris is the capital", ["Paris"], [], set(), "") == Judgement("Paris is the capital", True, True)


def test_text_partial_word_does_not_count():
    assert judge("Parisian", ["Paris"], [], set(), "") == Judgement("Parisian", False, True)


def test_text_any_target():
    assert judge("Answer: colour", ["color", "colour"], [], set(), "Answer:") == Judgement("colour", True, True)


def test_text_wrong_answer():
    assert judge("Answer: London", ["Paris"], [], set(), "Answer:") == Judgement("London", False, True)


def test_text_empty_reply_is_not_compliant():
    assert judge("  \n ", ["Paris"], [], set(), "") == Judgement("", False, False)


def test_text_marker_missing_is_not_compliant():
    assert judge("Paris", ["Paris"], [], set(), "Answer:") == Judgement("Paris", True, False)
