import json
import random
from dataclasses import replace

import pytest

from tap.chains import OP_IDS, OPS, SCALES, edit_space
from tap.chains.chain import AnswerFormat, Chain, Demo
from tap.chains.edits import Edit, EditSpace, apply_edit, replay
from tap.chains.library import Libraries
from tap.errors import EditError

D1, D2, D9 = Demo(1, "q1", "a1"), Demo(2, "q2", "a2"), Demo(9, "q9", "a9")
STEPS = ("Read the question carefully.", "Work out the answer.", "Check it.")
C = Chain("Answer the question.", AnswerFormat("", "{answer}"), STEPS, (D1, D2))
C_JSON = C.to_json()


@pytest.fixture(autouse=True)
def _chain_is_never_mutated():
    yield
    assert C.to_json() == C_JSON


def E(scale, op, target=(), payload=None):  # noqa: N802 - short constructor for readable tables
    return Edit(scale, op, target, payload)


# --- every operator, exact result ---------------------------------------------------------------

APPLY_CASES = [
    # token scale: segment 0 is the instruction, segment i >= 1 is step i-1
    (E("token", "add", (0, 1), "very carefully"), replace(C, instruction="Answer very carefully the question.")),
    (E("token", "add", (0, 0), " Please "), replace(C, instruction="Please Answer the question.")),
    (E("token", "add", (0, 3), "now"), replace(C, instruction="Answer the question. now")),
    (E("token", "add", (2, 0), "First,"), replace(C, steps=(STEPS[0], "First, Work out the answer.", STEPS[2]))),
    (E("token", "delete", (0, 0)), replace(C, instruction="the question.")),
    (E("token", "delete", (3, 1)), replace(C, steps=(*STEPS[:2], "Check"))),
    (E("token", "replace", (0, 2), "query."), replace(C, instruction="Answer the query.")),
    (E("token", "replace", (0, 0), "Please answer"), replace(C, instruction="Please answer the question.")),
    (E("token", "replace", (1, 3), "slowly."), replace(C, steps=("Read the question slowly.", *STEPS[1:]))),
    (E("token", "swap", (0, 0)), replace(C, instruction="the Answer question.")),
    (E("token", "swap", (0, 1)), replace(C, instruction="Answer question. the")),
    (E("token", "swap", (3, 0)), replace(C, steps=(*STEPS[:2], "it. Check"))),
    # segment scale: targets index the steps
    (E("segment", "reorder", (0, 2)), replace(C, steps=(STEPS[1], STEPS[2], STEPS[0]))),
    (E("segment", "reorder", (2, 0)), replace(C, steps=(STEPS[2], STEPS[0], STEPS[1]))),
    (E("segment", "reorder", (1, 2)), replace(C, steps=(STEPS[0], STEPS[2], STEPS[1]))),
    (E("segment", "split", (0, 2)), replace(C, steps=("Read the", "question carefully.", *STEPS[1:]))),
    (E("segment", "split", (2, 1)), replace(C, steps=(*STEPS[:2], "Check", "it."))),
    (E("segment", "merge", (0,)), replace(C, steps=("Read the question carefully. Work out the answer.", STEPS[2]))),
    (E("segment", "merge", (1,)), replace(C, steps=(STEPS[0], "Work out the answer. Check it."))),
    (E("segment", "insert", (1,), " Think. "), replace(C, steps=(STEPS[0], "Think.", *STEPS[1:]))),
    (E("segment", "insert", (0,), "Think."), replace(C, steps=("Think.", *STEPS))),
    (E("segment", "insert", (3,), "Think."), replace(C, steps=(*STEPS, "Think."))),
    (E("segment", "delete", (1,)), replace(C, steps=(STEPS[0], STEPS[2]))),
    (E("segment", "delete", (2,)), replace(C, steps=STEPS[:2])),
    # instruction scale
    (E("instruction", "add_example", (1,), {"uid": 9, "input": "q9", "output": "a9"}), replace(C, demos=(D1, D9, D2))),
    (E("instruction", "add_example", (0,), {"uid": 9, "input": "q9", "output": "a9"}), replace(C, demos=(D9, D1, D2))),
    (E("instruction", "add_example", (2,), {"uid": 9, "input": "q9", "output": "a9"}), replace(C, demos=(D1, D2, D9))),
    (E("instruction", "remove_example", (0,)), replace(C, demos=(D2,))),
    (E("instruction", "remove_example", (1,)), replace(C, demos=(D1,))),
    (E("instruction", "instruction_edit", (), "  Solve it. "), replace(C, instruction="Solve it.")),
    (E("instruction", "format_change", (), {"spec": "S.", "template": "Answer: {answer}"}),
     replace(C, answer_format=AnswerFormat("S.", "Answer: {answer}"))),
    (E("instruction", "format_change", (), {"template": "{answer}."}),
     replace(C, answer_format=AnswerFormat("", "{answer}."))),
    (E("instruction", "format_change", (), {"spec": "Only the answer.", "template": "{answer}"}),
     replace(C, answer_format=AnswerFormat("Only the answer.", "{answer}"))),
]


@pytest.mark.parametrize(("edit", "expected"), APPLY_CASES, ids=[e.describe() for e, _ in APPLY_CASES])
def test_apply_edit_exact_result(edit, expected):
    assert apply_edit(C, edit) == expected


def test_every_operator_is_covered_by_apply_cases():
    assert {(e.scale, e.op) for e, _ in APPLY_CASES} == set(OP_IDS)


def test_token_delete_may_empty_the_instruction():
    chain = Chain("Go.", steps=("Think hard.",))
    assert apply_edit(chain, E("token", "delete", (0, 0))) == Chain("", steps=("Think hard.",))


def test_segment_insert_into_a_chain_without_steps():
    assert apply_edit(Chain("Go."), E("segment", "insert", (0,), "Think.")) == Chain("Go.", steps=("Think.",))


def test_add_example_into_a_chain_without_demos():
    edit = E("instruction", "add_example", (0,), {"uid": "4", "input": 5, "output": 6})
    assert apply_edit(Chain("Go."), edit) == Chain("Go.", demos=(Demo(4, "5", "6"),))


# --- every operator's error cases ---------------------------------------------------------------

ERROR_CASES = [
    # token.add
    (E("token", "add", (0, 4), "x"), "position 4 is outside 0..3"),
    (E("token", "add", (0, -1), "x"), "position -1 is outside 0..3"),
    (E("token", "add", (4, 0), "x"), "segment 4 does not exist (the chain has 4: 0 = instruction, 1.. = steps)"),
    (E("token", "add", (-1, 0), "x"), "segment -1 does not exist"),
    (E("token", "add", (0, 1), ""), "token.add needs a non-empty text payload, got ''"),
    (E("token", "add", (0, 1), "   "), "token.add needs a non-empty text payload"),
    (E("token", "add", (0, 1)), "token.add needs a non-empty text payload, got None"),
    (E("token", "add", (0, 1), 5), "token.add needs a non-empty text payload, got 5"),
    # token.delete
    (E("token", "delete", (0, 3)), "word position 3 is outside 0..2 (segment 0 has 3 words)"),
    (E("token", "delete", (0, -1)), "word position -1 is outside 0..2"),
    (E("token", "delete", (5, 0)), "segment 5 does not exist"),
    # token.replace
    (E("token", "replace", (0, 1), "the"), "word 1 is already 'the'"),
    (E("token", "replace", (0, 1), " the "), "word 1 is already 'the'"),
    (E("token", "replace", (0, 3), "x"), "word position 3 is outside 0..2"),
    (E("token", "replace", (0, 1), ""), "token.replace needs a non-empty text payload"),
    (E("token", "replace", (9, 0), "x"), "segment 9 does not exist"),
    # token.swap
    (E("token", "swap", (0, 2)), "word position 2 is outside 0..1 (segment 0 has 3 words)"),
    (E("token", "swap", (3, 1)), "word position 1 is outside 0..0"),
    (E("token", "swap", (4, 0)), "segment 4 does not exist"),
    # segment.reorder
    (E("segment", "reorder", (1, 1)), "new index 1 must be in 0..2 and differ from 1"),
    (E("segment", "reorder", (0, 3)), "new index 3 must be in 0..2"),
    (E("segment", "reorder", (0, -1)), "new index -1 must be in 0..2"),
    (E("segment", "reorder", (3, 0)), "step 3 does not exist (the chain has 3 steps)"),
    # segment.split
    (E("segment", "split", (0, 0)), "split position 0 must be inside 1..3"),
    (E("segment", "split", (0, 4)), "split position 4 must be inside 1..3"),
    (E("segment", "split", (3, 1)), "step 3 does not exist"),
    # segment.merge
    (E("segment", "merge", (2,)), "step 2 is the last one; there is no next step to merge with"),
    (E("segment", "merge", (3,)), "step 3 does not exist"),
    (E("segment", "merge", (-1,)), "step -1 does not exist"),
    # segment.insert
    (E("segment", "insert", (4,), "Think."), "insert index 4 is outside 0..3"),
    (E("segment", "insert", (-1,), "Think."), "insert index -1 is outside 0..3"),
    (E("segment", "insert", (1,), "Check it."), "that step is already in the chain"),
    (E("segment", "insert", (1,), "  Check it.  "), "that step is already in the chain"),
    (E("segment", "insert", (1,), ""), "segment.insert needs a non-empty text payload"),
    (E("segment", "insert", (1,), None), "segment.insert needs a non-empty text payload"),
    # segment.delete
    (E("segment", "delete", (3,)), "step 3 does not exist (the chain has 3 steps)"),
    (E("segment", "delete", (-1,)), "step -1 does not exist"),
    # instruction.add_example
    (E("instruction", "add_example", (0,), {"uid": 1, "input": "q1", "output": "a1"}),
     "demonstration uid 1 is already in the chain"),
    (E("instruction", "add_example", (3,), {"uid": 9, "input": "q9", "output": "a9"}),
     "insert index 3 is outside 0..2"),
    (E("instruction", "add_example", (-1,), {"uid": 9, "input": "q9", "output": "a9"}), "insert index -1 is outside"),
    (E("instruction", "add_example", (0,), {"uid": 9, "input": "q9"}), "payload must be a demonstration"),
    (E("instruction", "add_example", (0,), "q9"), "payload must be a demonstration"),
    (E("instruction", "add_example", (0,)), "payload must be a demonstration"),
    # instruction.remove_example
    (E("instruction", "remove_example", (2,)), "demonstration 2 does not exist (the chain has 2)"),
    (E("instruction", "remove_example", (-1,)), "demonstration -1 does not exist"),
    # instruction.instruction_edit
    (E("instruction", "instruction_edit", (), "Answer the question."), "the instruction is already that text"),
    (E("instruction", "instruction_edit", (), " Answer the question. "), "the instruction is already that text"),
    (E("instruction", "instruction_edit", (), ""), "instruction.instruction_edit needs a non-empty text payload"),
    (E("instruction", "instruction_edit", (), {"text": "x"}), "needs a non-empty text payload"),
    # instruction.format_change
    (E("instruction", "format_change", (), {"spec": "", "template": "{answer}"}),
     "the chain already uses that answer format"),
    (E("instruction", "format_change", (), {"template": "{answer}"}), "the chain already uses that answer format"),
    (E("instruction", "format_change", (), {"spec": "S."}), "payload must be an answer format {'spec', 'template'}"),
    (E("instruction", "format_change", (), "Answer: {answer}"), "payload must be an answer format"),
    (E("instruction", "format_change", ()), "payload must be an answer format"),
]


@pytest.mark.parametrize(("edit", "why"), ERROR_CASES, ids=[f"{e.describe()}" for e, _ in ERROR_CASES])
def test_apply_edit_errors(edit, why):
    with pytest.raises(EditError) as err:
        apply_edit(C, edit)
    msg = str(err.value)
    # payload errors name the op; every other error names the whole edit
    assert msg.startswith((f"cannot apply {edit.describe()}: ", f"{edit.scale}.{edit.op} needs a non-empty text"))
    assert why in msg


def test_every_operator_has_error_cases():
    assert {(e.scale, e.op) for e, _ in ERROR_CASES} == set(OP_IDS)


@pytest.mark.parametrize(
    ("chain", "edit", "why"),
    [
        (Chain("Go.", steps=("Think.",)), E("token", "delete", (1, 0)), "deleting the only word leaves an empty step"),
        (Chain("go go now"), E("token", "swap", (0, 0)), "the two words are the same"),
        (Chain("Go."), E("token", "swap", (0, 0)), "word position 0 is outside 0..-1"),
        (Chain("Go.", steps=("Think.",)), E("segment", "split", (0, 1)), "split position 1 must be inside 1..0"),
        (Chain("Go.", steps=("Think.",)), E("segment", "merge", (0,)), "step 0 is the last one"),
        (Chain("Go.", steps=("Think.",)), E("segment", "reorder", (0, 0)), "new index 0 must be in 0..0"),
        (Chain("Go."), E("segment", "delete", (0,)), "step 0 does not exist (the chain has 0 steps)"),
        (Chain("Go."), E("instruction", "remove_example", (0,)), "demonstration 0 does not exist (the chain has 0)"),
    ],
)
def test_apply_edit_errors_on_small_chains(chain, edit, why):
    with pytest.raises(EditError, match="cannot apply") as err:
        apply_edit(chain, edit)
    assert why in str(err.value)


def test_format_change_bad_template_is_an_edit_error():
    with pytest.raises(EditError):
        apply_edit(C, E("instruction", "format_change", (), {"spec": "", "template": "no placeholder"}))


def test_add_example_duplicate_uid_as_string():
    with pytest.raises(EditError, match="already in the chain"):
        apply_edit(C, E("instruction", "add_example", (0,), {"uid": "1", "input": "q1", "output": "a1"}))


# --- Edit construction and JSON -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("word", "add", (0, 0)), "unknown edit scale 'word'; scales are ['token', 'segment', 'instruction']"),
        (("token", "insert", (0,)), "unknown token op 'insert'; token ops are ['add', 'delete', 'replace', 'swap']"),
        (("segment", "swap", (0,)), "unknown segment op 'swap'"),
        (("instruction", "delete", (0,)), "unknown instruction op 'delete'"),
        (("token", "add", (0,)), "token.add takes a target of 2 integers, got [0]"),
        (("token", "delete", (0,)), "token.delete takes a target of 2 integers, got [0]"),
        (("token", "swap", (0, 1, 2)), "token.swap takes a target of 2 integers, got [0, 1, 2]"),
        (("token", "replace", ()), "token.replace takes a target of 2 integers, got []"),
        (("segment", "delete", (0, 1)), "segment.delete takes a target of 1 integers, got [0, 1]"),
        (("segment", "reorder", (0,)), "segment.reorder takes a target of 2 integers"),
        (("segment", "split", (0,)), "segment.split takes a target of 2 integers"),
        (("segment", "merge", (0, 1)), "segment.merge takes a target of 1 integers"),
        (("segment", "insert", ()), "segment.insert takes a target of 1 integers"),
        (("instruction", "add_example", ()), "instruction.add_example takes a target of 1 integers"),
        (("instruction", "remove_example", (0, 0)), "instruction.remove_example takes a target of 1 integers"),
        (("instruction", "instruction_edit", (0,)),
         "instruction.instruction_edit takes a target of 0 integers, got [0]"),
        (("instruction", "format_change", (1,)), "instruction.format_change takes a target of 0 integers"),
    ],
)
def test_edit_construction_errors(args, why):
    with pytest.raises(EditError) as err:
        Edit(*args)
    assert why in str(err.value)


def test_edit_target_is_normalised_to_int_tuple():
    assert Edit("token", "add", [0, "2"], "x").target == (0, 2)


def test_op_ids_are_stable():
    assert OP_IDS == {
        ("token", "add"): 0, ("token", "delete"): 1, ("token", "replace"): 2, ("token", "swap"): 3,
        ("segment", "reorder"): 4, ("segment", "split"): 5, ("segment", "merge"): 6, ("segment", "insert"): 7,
        ("segment", "delete"): 8, ("instruction", "add_example"): 9, ("instruction", "remove_example"): 10,
        ("instruction", "instruction_edit"): 11, ("instruction", "format_change"): 12,
    }
    assert SCALES == ("token", "segment", "instruction")
    assert E("segment", "merge", (0,)).op_id == 6


@pytest.mark.parametrize("edit", [e for e, _ in APPLY_CASES], ids=[e.describe() for e, _ in APPLY_CASES])
def test_edit_json_round_trip(edit):
    text = edit.to_json()
    assert Edit.from_json(text) == edit
    assert Edit.from_dict(json.loads(text)) == edit
    assert apply_edit(C, Edit.from_json(text)) == apply_edit(C, edit)


def test_edit_to_json_content():
    edit = E("instruction", "add_example", (1,), {"uid": 9, "input": "q9", "output": "a9"})
    assert json.loads(edit.to_json()) == {
        "scale": "instruction", "op": "add_example", "target": [1],
        "payload": {"uid": 9, "input": "q9", "output": "a9"},
    }
    assert Edit.from_dict({"scale": "segment", "op": "merge", "target": [0]}) == E("segment", "merge", (0,))


def test_edit_describe():
    assert E("token", "add", (0, 1), "very").describe() == "token.add[0, 1] 'very'"
    assert E("segment", "merge", (2,)).describe() == "segment.merge[2]"
    assert E("instruction", "add_example", (1,), {"uid": 9, "input": "q", "output": "a"}).describe() == (
        "instruction.add_example[1] 'demo uid 9'"
    )
    assert E("instruction", "format_change", (), {"spec": "", "template": "A: {answer}"}).describe() == (
        "instruction.format_change[] 'A: {answer}'"
    )


def test_edit_from_json_errors():
    with pytest.raises(EditError, match="edit is not valid JSON"):
        Edit.from_json("{scale")
    with pytest.raises(EditError, match=r"edit JSON lacks \['op'\]"):
        Edit.from_json('{"scale": "token"}')
    with pytest.raises(EditError, match=r"edit JSON lacks \['op', 'scale'\]"):
        Edit.from_json("{}")
    with pytest.raises(EditError, match="unknown edit scale"):
        Edit.from_json('{"scale": "x", "op": "add"}')


@pytest.mark.parametrize("target", ['["a", 0]', "5"])
def test_edit_from_json_bad_target(target):
    with pytest.raises(EditError):
        Edit.from_json(f'{{"scale": "token", "op": "add", "target": {target}, "payload": "x"}}')


def test_replay_objects_and_dicts():
    edits = [E("token", "swap", (0, 0)), E("segment", "merge", (0,)), E("instruction", "remove_example", (0,))]
    expected = Chain("the Answer question.", C.answer_format,
                     ("Read the question carefully. Work out the answer.", "Check it."), (D2,))
    assert replay(C, edits) == expected
    assert replay(C, [e.to_dict() for e in edits]) == expected
    assert replay(C, [json.loads(e.to_json()) for e in edits]) == expected
    assert replay(C, []) == C


def test_replay_stops_at_the_first_bad_edit():
    with pytest.raises(EditError, match="cannot apply segment.merge\\[1\\]: step 1 is the last one"):
        replay(C, [E("segment", "delete", (0,)), E("segment", "merge", (1,))])


# --- EditSpace ---------------------------------------------------------------------------------

POOL = [Demo(10, "What is 1 + 1?", "2"), Demo(11, "What is 2 + 5?", "7"), Demo(12, "What is 3 + 3?", "6")]


def _trajectory(space: EditSpace, seed: int, n: int = 40, start: Chain = C) -> tuple[list[Edit], list[Chain]]:
    rng = random.Random(seed)
    chain, edits, chains = start, [], [start]
    for _ in range(n):
        edit = space.sample(chain, rng)
        chain = apply_edit(chain, edit).validate()
        edits.append(edit)
        chains.append(chain)
    return edits, chains


def test_replay_of_a_sampled_trajectory_reproduces_every_chain():
    space = EditSpace(Libraries(), POOL)
    start = Chain("Answer the question.", steps=STEPS[:2])
    edits, chains = _trajectory(space, seed=3, n=60, start=start)
    as_json = [e.to_json() for e in edits]  # what a collector would write to disk
    assert replay(start, [json.loads(t) for t in as_json]) == chains[-1]
    for k in (1, 10, 30):
        assert replay(start, [Edit.from_json(t) for t in as_json[:k]]) == chains[k]
    assert len({e.scale for e in edits}) == 3  # the trajectory exercised every scale


def test_sampling_is_deterministic_under_a_seeded_rng():
    space = EditSpace(Libraries(), POOL)
    first, _ = _trajectory(space, seed=7)
    second, _ = _trajectory(EditSpace(Libraries(), POOL), seed=7)
    other, _ = _trajectory(space, seed=8)
    assert [e.to_json() for e in first] == [e.to_json() for e in second]
    assert [e.to_json() for e in first] != [e.to_json() for e in other]


def test_random_chain_is_deterministic_and_valid():
    space = EditSpace(Libraries(), POOL)
    chains = [space.random_chain(random.Random(s)) for s in range(20)]
    assert chains == [space.random_chain(random.Random(s)) for s in range(20)]
    lib = Libraries()
    for chain in chains:
        assert chain.validate() is chain
        assert chain.instruction in lib.instructions and chain.answer_format in lib.formats
        assert set(chain.steps) <= set(lib.steps) and len(chain.steps) <= 3
        assert set(chain.demos) <= set(POOL) and len(chain.demos) <= 3
    assert len({c.to_json() for c in chains}) > 10


def test_edit_space_never_proposes_a_demo_outside_its_pool():
    space = EditSpace(Libraries(), POOL, max_demos=2)
    rng = random.Random(0)
    chain = Chain("Answer.")
    added = set()
    for _ in range(300):
        edit = space.sample(chain, rng, scale_weights={"instruction": 1.0})
        assert edit.scale == "instruction"
        if edit.op == "add_example":
            demo = Demo(**edit.payload)
            assert demo in POOL
            added.add(demo.uid)
        chain = apply_edit(chain, edit)
        assert set(chain.demos) <= set(POOL)
        assert len(chain.demos) <= 2
    assert added == {10, 11, 12}


def test_edit_space_respects_max_steps():
    space = EditSpace(Libraries(), POOL, max_steps=2)
    rng = random.Random(1)
    chain = Chain("Answer.")
    for _ in range(200):
        chain = apply_edit(chain, space.sample(chain, rng, scale_weights={"segment": 1.0}))
        assert len(chain.steps) <= 2


def test_scale_weights_select_scales():
    space = EditSpace(Libraries(), POOL)
    rng = random.Random(2)
    edits = [space.sample(C, rng, scale_weights={"token": 1.0, "segment": 0.0}) for _ in range(50)]
    assert {e.scale for e in edits} == {"token"}
    assert {e.op for e in edits} == set(OPS["token"])
    for edit in edits:
        apply_edit(C, edit).validate()


def test_zero_scale_weights_error():
    with pytest.raises(EditError, match="give no scale a positive weight"):
        EditSpace(Libraries(), POOL).sample(C, random.Random(0), scale_weights={"token": 0.0})


def test_no_valid_edit_error():
    space = EditSpace(Libraries(steps=()), POOL)
    with pytest.raises(EditError, match="no valid edit found for this chain with scales \\['segment'\\]"):
        space.sample(Chain("Go."), random.Random(0), scale_weights={"segment": 1.0})


@pytest.mark.parametrize(
    ("chain", "scale", "op"),
    [
        (Chain("Go."), "segment", "delete"),
        (Chain("Go.", steps=("One step.",)), "segment", "merge"),
        (Chain("Go.", steps=("One step.",)), "segment", "reorder"),
        (Chain("Go.", steps=("Single.",)), "segment", "split"),
        (Chain("Go."), "instruction", "remove_example"),
        (Chain("Go.", demos=tuple(POOL)), "instruction", "add_example"),
        (Chain("Go.", steps=("Think.",)), "token", "swap"),
        (Chain("", steps=("Think.",)), "token", "delete"),
    ],
)
def test_candidates_none_when_op_cannot_apply(chain, scale, op):
    assert EditSpace(Libraries(), POOL).candidates(chain, scale, op, random.Random(0)) is None


def test_candidates_for_every_op_apply_to_a_rich_chain():
    space = EditSpace(Libraries(), POOL)
    rng = random.Random(5)
    for scale, op in OP_IDS:
        for _ in range(10):
            edit = space.candidates(C, scale, op, rng)
            assert (edit.scale, edit.op) == (scale, op)
            new = apply_edit(C, edit)
            assert new != C


def test_edit_space_of_a_task_uses_train_only(tiny_task, tiny_mc_task):
    space = edit_space(tiny_task)
    assert [d.uid for d in space.demo_pool] == [ex.uid for ex in tiny_task.train]
    assert space.demo_pool == [Demo(ex.uid, ex.input, ex.answer) for ex in tiny_task.train]
    held_out = {ex.uid for ex in tiny_task.val + tiny_task.test}
    assert not held_out & {d.uid for d in space.demo_pool}
    assert space.libraries.instructions[0] == "Add the two numbers."
    assert space.libraries.instructions[1:] == Libraries().instructions
    mc = edit_space(tiny_mc_task, max_demos=2, max_steps=3)
    assert {d.output for d in mc.demo_pool} <= {"True", "False"}
    assert (mc.max_demos, mc.max_steps) == (2, 3)
    rng = random.Random(0)
    chain = Chain("Go.")
    train_uids = {ex.uid for ex in tiny_task.train}
    for _ in range(100):
        chain = apply_edit(chain, space.sample(chain, rng, scale_weights={"instruction": 1.0}))
        assert {d.uid for d in chain.demos} <= train_uids


def test_libraries_for_task():
    lib = Libraries()
    assert lib.for_task("") is lib
    assert lib.for_task(lib.instructions[2]) is lib
    assert lib.for_task("Count.").instructions == ("Count.", *lib.instructions)


def test_every_operator_has_a_target_length():
    from tap.chains.edits import _TARGET_LEN

    assert set(_TARGET_LEN) == set(OP_IDS)


def test_op_ids_are_a_stable_literal_table():
    """Checkpoints embed these ids: an existing id must never change (new operators append)."""
    from tap.chains.edits import OP_IDS, OPS

    frozen = {("token", "add"): 0, ("token", "delete"): 1, ("token", "replace"): 2, ("token", "swap"): 3,
              ("segment", "reorder"): 4, ("segment", "split"): 5, ("segment", "merge"): 6, ("segment", "insert"): 7,
              ("segment", "delete"): 8, ("instruction", "add_example"): 9, ("instruction", "remove_example"): 10,
              ("instruction", "instruction_edit"): 11, ("instruction", "format_change"): 12}
    assert {k: OP_IDS[k] for k in frozen} == frozen
    assert set(OP_IDS) == {(s, o) for s in OPS for o in OPS[s]}
    assert sorted(OP_IDS.values()) == list(range(len(OP_IDS)))
