import json
import re
from collections.abc import Sequence

import pytest

pytest.importorskip("dspy")

from tap.llm.base import GenerationSettings  # noqa: E402
from tests.helpers import FakeLLM, import_benchmark, write_arithmetic_jsonl  # noqa: E402


class PeerFake(FakeLLM):
    """Answers "What is a + b?" (in DSPy's field format when the prompt uses it, wrong when a + b is odd) and fills any
    other DSPy request's output fields with a short text, so proposers and reflections run.
    """

    name = "peer-fake"

    def generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        super().generate(prompts, settings)
        return [self._reply(p) for p in prompts]

    @staticmethod
    def _reply(prompt: str) -> str:
        if "<prompt>" in prompt:  # promptolution's meta prompts ask for a prompt between tags
            return "<prompt>Add the two numbers.</prompt>"
        tail = prompt.rsplit("Respond with the corresponding output fields", 1)
        fields = [f for f in re.findall(r"\[\[ ## (\w+) ## \]\]", tail[1])] if len(tail) == 2 else []
        asked = re.findall(r"What is (\d+) \+ (\d+)\?", prompt)
        if fields and fields != ["answer", "completed"] or not asked:
            return "".join(f"[[ ## {f} ## ]]\nAdd the two numbers.\n\n" for f in fields if f != "completed")
        a, b = map(int, asked[-1])
        answer = str(a + b + (a + b) % 2)
        if fields:
            return f"[[ ## answer ## ]]\n{answer}"
        return f"<final_answer>{answer}</final_answer>" if "final_answer" in prompt else answer


@pytest.fixture
def peers(tmp_path):
    return import_benchmark("peers"), write_arithmetic_jsonl(tmp_path / "add.jsonl", 60), tmp_path / "out"


def _rows(out):
    return {p.relative_to(out).as_posix(): json.loads(p.read_text()) for p in sorted((out / "runs").rglob("*.json"))}


def test_budgets_hold_zero_call_rows_pay_nothing_and_resume_is_free(peers, tmp_path):
    peers, task, out = peers
    args = ["--tasks", task, "--budgets", "0", "48", "--seeds", "0", "--test", "8", "--val", "6", "--out", str(out),
            "--methods", "labeled", "bfsrs", "mipro", "gepa", "capo", "evoprompt", "tap"]
    fake = PeerFake()
    assert peers.main(args, llm=_cached(fake, tmp_path)) == 0
    rows = _rows(out)
    assert len(rows) == 13  # labeled at 0 only; the others at 0 and 48
    for row in rows.values():
        assert row["calls"] <= row["budget"]
        assert row["prompt"][-1]["content"]  # the final prompt is kept
    assert all(r["calls"] == 0 and r["paid"] == 0 for r in rows.values() if r["budget"] == 0)
    assert any(r["calls"] > 24 for r in rows.values() if r["budget"] == 48)  # the sized peers spend their budget
    assert "| labeled | 0 | 1 |" in (out / "peers.md").read_text() and (out / "peers.png").exists()
    # a rerun skips every saved run; a lost run is redone from the cache: same row, nothing paid
    lost = next(k for k, r in rows.items() if r["method"] == "bfsrs" and r["budget"] == 48)
    (out / lost).unlink()
    again = PeerFake()
    assert peers.main(args, llm=_cached(again, tmp_path)) == 0
    redone = _rows(out)[lost]
    assert again.generated == 0 and redone["paid"] == 0
    assert {k: v for k, v in redone.items() if k not in ("paid", "seconds")} == \
        {k: v for k, v in rows[lost].items() if k not in ("paid", "seconds")}


def _cached(fake, tmp_path):
    from tap.llm import CachedLLM, CallCache

    return CachedLLM(fake, CallCache(tmp_path / "calls.sqlite"))


class Proposer(PeerFake):
    name = "proposer-fake"


def test_a_second_proposer_llm_shares_the_budget(peers, tmp_path):
    peers, task, out = peers
    frozen, proposer = PeerFake(), Proposer()
    args = ["--tasks", task, "--budgets", "40", "--seeds", "0", "--test", "4", "--val", "6", "--out", str(out),
            "--methods", "gepa", "--proposer", "proposer-fake"]
    assert peers.main(args, llm=_cached(frozen, tmp_path), proposer=_cached(proposer, tmp_path)) == 0
    (row,) = _rows(out).values()
    assert row["method"] == "gepa+proposer-fake" and row["proposer"] == "proposer-fake"
    assert proposer.generated > 0 and frozen.generated > 0 and row["calls"] <= 40


def test_seeds_parse():
    peers = import_benchmark("peers")
    assert peers.seeds_of("0-4") == [0, 1, 2, 3, 4] and peers.seeds_of("1,3") == [1, 3]
