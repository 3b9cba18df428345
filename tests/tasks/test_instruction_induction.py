"""The shipped instruction-induction tasks (``ii:NAME``), surface answer matching and induced instructions."""

import json
import subprocess
import sys
import zipfile

import pytest

from tap.chains import GENERIC_INSTRUCTION, edit_space, initial_chain
from tap.chains.induce import FORWARD, default_count, induce_instructions
from tap.errors import TaskError
from tap.llm.cache import CallCache
from tap.llm.cached import CachedLLM
from tap.tasks import load_task
from tap.tasks.answers import judge, surface_normalize
from tap.tasks.instruction_induction import ii_task_names
from tests.helpers import FakeLLM

NAMES = ["antonyms", "cause_and_effect", "common_concept", "diff", "first_word_letter", "informal_to_formal",
         "letters_list", "num_to_verbal", "orthography_starts_with", "rhymes", "second_word_letter",
         "sentence_similarity", "sentiment", "singular_to_plural", "sum", "synonyms", "taxonomy_animal",
         "translation_en-de", "translation_en-es", "translation_en-fr", "word_in_context"]


def test_all_21_tasks_ship_and_load_with_disjoint_deterministic_splits():
    assert ii_task_names() == NAMES
    for name in NAMES:
        task = load_task(f"ii:{name}")
        assert task.metric == "exact_match" and task.match == "surface" and task.description == ""
        uids = [set(ex.uid for ex in task.splits[s]) for s in ("train", "val", "test")]
        assert not (uids[0] & uids[1] or uids[0] & uids[2] or uids[1] & uids[2])
        assert sum(map(len, uids)) == len(task.examples) >= 30
        assert all(ex.targets and all(t.strip() for t in ex.targets) for ex in task.examples)
    a, b = load_task("ii:sentiment", seed=0), load_task("ii:sentiment", seed=0)
    assert [e.uid for e in a.val] == [e.uid for e in b.val] != [e.uid for e in load_task("ii:sentiment", seed=1).val]


def test_source_attribution_ships_with_the_tasks():
    from importlib import resources

    text = (resources.files("tap.tasks") / "instruction_induction" / "SOURCE.md").read_text()
    assert "MIT License" in text and "keirp" in text and "2205.10782" in text


def test_every_accepted_answer_is_a_target():
    task = load_task("ii:rhymes")
    sing = next(ex for ex in task.examples if ex.input == "sing")
    assert {"thing", "king", "ring"} <= set(sing.targets)


def test_unknown_task_names_the_fix():
    with pytest.raises(TaskError, match="Did you mean: ii:sentiment"):
        load_task("ii:sentimen")
    with pytest.raises(TaskError, match="python -m tap.tasks"):
        load_task("ii:nothing_like_it")


def test_generic_chain_for_tasks_without_description():
    task = load_task("ii:singular_to_plural")
    assert initial_chain(task.description).instruction == GENERIC_INSTRUCTION == "Respond to the input."
    space = edit_space(task, induced=("Write the plural of the word.",))
    assert space.libraries.instructions[:2] == (GENERIC_INSTRUCTION, "Write the plural of the word.")


# replies SmolLM2-135M-Instruct gave on these tasks (benchmarks/sensitivity.py), and variants a user calls the same
@pytest.mark.parametrize("reply,targets,correct", [
    ("broadcasters", ["broadcasters"], True),
    ("Broadcasters.", ["broadcasters"], True),
    ("  'maneuvres'  \nInput: x", ["maneuvres"], True),
    ("john", ["john"], True),
    ("a", ["a"], True),  # an article is an answer here (orthography_starts_with); SQuAD normalisation would drop it
    ("positive", ["positive"], True),
    ("Positive sentiment", ["positive"], False),
    ("The plural of game is games.", ["games"], False),
    ("t, i, m, e", ["t i m e"], False),
    ("t  i m e", ["t i m e"], True),
    ("0", ["zero"], False),  # num_to_verbal: digits are not the words
    ("It started raining", ["It started raining."], True),
    ("who asked which statue which tourist had taken a photo of is unknown.", ["who"], False),
    ("I'm ready to assist. What can I help you with today?", ["games"], False),
])
def test_surface_match_on_real_reply_shapes(reply, targets, correct):
    assert judge(reply, targets, [], set(), "", match="surface").correct is correct


def test_surface_match_honours_the_answer_marker():
    j = judge("The word is plural.\nAnswer: Games.", ["games"], [], set(), "Answer:", match="surface")
    assert j.correct and j.compliant and j.extracted == "Games."
    assert surface_normalize(" “Games.” ") == "games"


class _Proposer(FakeLLM):
    name = "proposer"

    def generate(self, prompts, settings):
        self.generate_batches.append(list(prompts))
        return [f"write the plural of each word {p.count('Input:') + len(p) % 7}.\nmore" for p in prompts]


def _cached(llm, cache=None):
    return CachedLLM(llm, cache if cache is not None else CallCache(None))


def test_induced_instructions_are_cached_counted_and_deterministic(tmp_path):
    task = load_task("ii:singular_to_plural")
    cache = CallCache(tmp_path / "calls.sqlite")
    fake = _Proposer()
    first = induce_instructions(_cached(fake, cache), task, n=5, seed=0)
    assert first.requests == 5 and first.llm_calls == 5 and first.cache_hits == 0
    assert 1 <= len(first.instructions) <= 5 and all(t.startswith("Write the plural") for t in first.instructions)
    again = induce_instructions(_cached(_Proposer(), cache), task, n=5, seed=0)
    assert again.instructions == first.instructions and again.llm_calls == 0 and again.cache_hits == 5
    assert again.costs() == {"model": "proposer", "requests": 5, "llm_calls": 0, "cache_hits": 5, "induced":
                             len(first.instructions)}
    train = {ex.input for ex in task.train}
    heldout = {ex.input for ex in task.val + task.test} - train
    for prompt in fake.generate_batches[0]:
        assert FORWARD.split("{n}")[0] in prompt
        shown = [line[len("Input: "):] for line in prompt.split("\n") if line.startswith("Input: ")]
        assert len(shown) == 5 and set(shown) <= train and not set(shown) & heldout


def test_induction_count_defaults_to_tasks_without_description():
    assert default_count(load_task("ii:sum")) == 8
    assert default_count(load_task("ii:sum"), 3) == 3
    from tests.helpers import arithmetic_task

    assert default_count(arithmetic_task(20)) == 0  # it has its own instruction
    with pytest.raises(ValueError):
        default_count(load_task("ii:sum"), -1)


def test_a_built_wheel_holds_the_tasks(tmp_path):
    """Package data: a non-editable install (a wheel) carries the 21 task files and SOURCE.md."""
    import shutil
    from pathlib import Path

    root, src = Path(__file__).resolve().parents[2], tmp_path / "src"  # build out of tree: no build/ in the repo
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "tap", src / "tap", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("tap-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.rsplit("/", 1)[-1] for n in names if n.startswith("tap/tasks/instruction_induction/")}
    assert shipped == {f"{n}.jsonl" for n in NAMES} | {"SOURCE.md"}
    row = json.loads(zipfile.ZipFile(wheel).read("tap/tasks/instruction_induction/sum.jsonl").splitlines()[0])
    assert set(row) == {"input", "target"}


def test_tasks_cli_lists_both_sources_and_fails_cleanly(capsys, tmp_path):
    from tap.tasks.__main__ import main

    assert main(["--source", "ii"]) == 0
    out = capsys.readouterr().out
    assert "ii:sentiment" in out and out.count("\nii:") == 21
    assert main(["ii:sentiment"]) == 0 and "match=surface" in capsys.readouterr().out
    assert main(["ii:nope"]) == 2 and "error: unknown instruction-induction task" in capsys.readouterr().err
    two = tmp_path / "two.jsonl"
    two.write_text('{"input": "a", "target": "b"}\n{"input": "c", "target": "d"}\n')
    assert main([str(two)]) == 2 and "at least 3 are needed" in capsys.readouterr().err


def test_listing_everything_keeps_the_shipped_tasks_when_big_bench_is_unavailable(capsys, monkeypatch):
    from tap.errors import TaskError
    from tap.tasks import bigbench
    from tap.tasks.__main__ import main

    def unavailable():
        raise TaskError("could not download the BIG-bench source from the package registry")

    monkeypatch.setattr(bigbench, "task_names", unavailable)
    assert main([]) == 0
    out, err = capsys.readouterr()
    assert out.count("\nii:") == 21 and "BIG-bench tasks unavailable here: could not download" in err
    assert main(["--source", "bigbench"]) == 2  # asked for BIG-bench alone: the error, by name
    assert "could not download the BIG-bench source" in capsys.readouterr().err
