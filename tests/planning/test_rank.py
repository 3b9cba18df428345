"""``python -m tap.planning.rank``: a chain's candidate edits ranked in imagination (no LLM), each prediction equal
to the world model's own one-edit reading, the prior beside it, named errors, and the command end to end."""

from __future__ import annotations

import json
import random

import pytest
import torch

from tap.chains import Chain, Edit, edit_space, initial_chain
from tap.errors import EditError, TapError
from tap.metrics import normal_quantile
from tap.planning.halving import imagined_effects
from tap.planning.rank import RankedEdit, main, prior_ranks, rank_edits, report, shown
from tests.helpers import arithmetic_task, save_tiny_world_model, tiny_world_model


@pytest.fixture(scope="module")
def wm():
    model = tiny_world_model().eval()
    model.op_delta[0, :4] = torch.tensor([0.3, -0.2, 0.1, 0.1])  # a prior with a tie
    model.op_delta[1, :4] = 2.0
    return model


@pytest.fixture(scope="module")
def task():
    return arithmetic_task(40)


def test_each_prediction_is_the_models_one_edit_reading_and_the_list_is_sorted(wm, task):
    chain = initial_chain(task.description)
    edits = edit_space(task).propose(chain, 12, random.Random(0))
    ranked = rank_edits(wm, task, chain, edits, task_pairs=3)
    assert sorted(e.to_json() for e in edits) == sorted(r.edit.to_json() for r in ranked)
    assert [r.mean for r in ranked] == sorted((r.mean for r in ranked), reverse=True)
    for r in ranked:  # one edit at a time, naively, as the search's imagination reads it
        mean, std = imagined_effects(wm, task, chain, [(r.edit,)], task_pairs=3)
        assert r.mean == pytest.approx(float(mean[0, 0]), abs=1e-5)
        assert r.std == pytest.approx(float(std[0, 0]), abs=1e-5)
        assert r.dense == pytest.approx(float(mean[0, 1]), abs=1e-5)
        assert r.prior == pytest.approx(float(wm.op_prior(torch.tensor([r.edit.op_id]))[0]))
        lo, hi = r.interval()
        half = normal_quantile(0.8) * r.std
        assert lo == pytest.approx(max(-1.0, r.mean - half)) and hi == pytest.approx(min(1.0, r.mean + half))
    # the task's pairs are what the model reads of the task: other pairs, other predictions
    other = rank_edits(wm, task, chain, edits, task_pairs=1)
    assert {r.edit.to_json(): r.mean for r in other} != {r.edit.to_json(): r.mean for r in ranked}


def test_prior_ranks_share_the_best_rank_of_a_tie_and_the_report_says_whether_the_task_was_trained_on():
    e = Edit("token", "add", (0, 0), "x")
    ranked = [RankedEdit(e, 0.0, 0.1, 0.0, p) for p in (0.1, 0.3, 0.1, -0.2)]
    assert prior_ranks(ranked) == [2, 1, 2, 4]
    text = report("ii:rhymes", Chain("Rhyme."), ranked, 2, ["ii:rhymes", "ii:sentiment"])
    assert "ii:rhymes: trained on by this world model" in text and "(2 more;" in text
    assert "never trained on" in report("ii:rhymes", Chain("Rhyme."), ranked, 4, ["ii:sentiment"])


def test_a_demonstration_is_shown_as_its_input_and_output():
    demo = Edit("instruction", "add_example", (0,), {"uid": 3, "input": "cat", "output": "cats"})
    assert shown(demo) == "instruction.add_example[0] 'cat' -> 'cats'"
    assert len(shown(Edit("token", "add", (0, 0), "y" * 200), width=40)) == 40


def test_errors_name_the_problem(wm, task):
    chain = initial_chain(task.description)
    with pytest.raises(TapError, match="no candidate edits"):
        rank_edits(wm, task, chain, [])
    with pytest.raises(EditError, match="cannot apply"):
        rank_edits(wm, task, chain, [Edit("segment", "delete", (5,))])


def _task_file(tmp_path):
    path = tmp_path / "adds.jsonl"
    path.write_text("".join(json.dumps({"input": f"What is {a} + {b}?", "target": str(a + b)}) + "\n"
                            for a in range(1, 7) for b in range(8)))
    return path


def test_the_command_prints_the_ranking_writes_it_and_repeats_itself(tmp_path, capsys):
    ckpt = save_tiny_world_model(tmp_path / "wm.ckpt", tasks=("tiny-arith",))
    task = _task_file(tmp_path)
    args = ["--checkpoint", str(ckpt), "--task", str(task), "--candidates", "10", "--top", "4"]
    assert main([*args, "--out", str(tmp_path / "r1.json")]) == 0
    out = capsys.readouterr().out
    assert "never trained on by this world model" in out and "no LLM call" in out and "(6 more;" in out
    first = json.loads((tmp_path / "r1.json").read_text())
    assert len(first["ranked"]) == 10 and first["task_pairs"] == 4  # the checkpoint records none: 4
    means = [r["mean"] for r in first["ranked"]]
    assert means == sorted(means, reverse=True)
    assert main([*args, "--out", str(tmp_path / "r2.json")]) == 0  # the same seed: the same candidates and reading
    assert json.loads((tmp_path / "r2.json").read_text())["ranked"] == first["ranked"]
    # from a given chain (a file a search wrote), and another seed drawing other candidates
    chain = Chain.from_json(json.dumps(first["chain"]))
    (tmp_path / "chain.json").write_text(chain.to_json())
    again = ["--chain", str(tmp_path / "chain.json"), "--seed", "1", "--out", str(tmp_path / "r3.json")]
    assert main([*args, *again]) == 0
    assert json.loads((tmp_path / "r3.json").read_text())["seed"] == 1


def test_the_command_refuses_bad_input_by_name(tmp_path, capsys):
    ckpt = save_tiny_world_model(tmp_path / "wm.ckpt")
    task = _task_file(tmp_path)
    assert main(["--checkpoint", str(tmp_path / "missing"), "--task", str(task)]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["--checkpoint", str(ckpt), "--task", str(task), "--chain", str(tmp_path / "nope.json")]) == 2
    assert "cannot read the chain" in capsys.readouterr().err
    assert main(["--checkpoint", str(ckpt), "--task", str(task), "--candidates", "0"]) == 2
    assert "--candidates (0)" in capsys.readouterr().err
    assert main(["--checkpoint", str(ckpt), "--task", "ii:no_such_task"]) == 2
    assert "no_such_task" in capsys.readouterr().err


def test_exit_code_turns_a_named_error_into_one_line_and_code_2(capsys):
    from tap.errors import exit_code

    def fail():
        raise TapError("the checkpoint is missing; train one first.")

    assert exit_code(fail) == 2 and capsys.readouterr().err == "error: the checkpoint is missing; train one first.\n"
    assert exit_code(lambda: 3) == 3 and exit_code(lambda: ["ranked"]) == 0
    with pytest.raises(ZeroDivisionError):  # a bug is not a user error: its traceback stays
        exit_code(lambda: 1 / 0)


def test_intervals_are_cut_to_what_an_accuracy_change_can_be_and_extrapolations_are_marked():
    e = Edit("token", "add", (0, 0), "x")
    wide, beyond = RankedEdit(e, 0.5, 1.0, 0.0, 0.1), RankedEdit(e, 1.2, 0.2, 0.0, 0.1)
    assert wide.interval() == (pytest.approx(0.5 - normal_quantile(0.8)), 1.0) and not wide.extrapolated
    assert beyond.interval()[1] == 1.0 and beyond.extrapolated and beyond.to_dict()["interval80"][1] == 1.0
    text = report("ii:rhymes", Chain("Rhyme."), [beyond, wide], 2, [])
    assert "+1.200*" in text and "*: beyond what an accuracy change can be" in text
    assert "*: beyond" not in report("ii:rhymes", Chain("Rhyme."), [wide], 1, [])
