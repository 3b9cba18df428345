"""The triples' row format and the features read from it, in one place: what collection writes, what
online refinement appends during a search, and what the DataModule and the world model read.

A row is one edit: the task (``task``, ``context`` = its description, ``task_pairs``), where it was
made (``trajectory``, ``step``, and for sibling data ``group``, ``parent_id``, ``sibling``,
``chosen``), the chain, the edit and the next chain as JSON (``chain``, ``edit``, ``next_chain``,
with ``scale``, ``op``, ``op_id``), the examples both were evaluated on (``example_uids``) and how
the LLM responded to each (``response_fields``, unprefixed for the chain and ``next_`` for the next
chain, plus ``next_responses``).
"""

from __future__ import annotations

import math
from collections import Counter

from tap.chains.chain import Chain
from tap.chains.edits import SCALES, Edit
from tap.env import Evaluation
from tap.tasks.schema import Task

SCALE_IDS = {s: i for i, s in enumerate(SCALES)}
#: response-summary features, in order (see ``response_summary``)
RESPONSE_FEATURES = ("accuracy", "dense", "compliance", "answer_entropy", "majority_share")


def response_summary(reward: float, dense: float, compliance: float, answers: list[str]) -> list[float]:
    """A fixed-size summary of how the LLM answered: scores plus the shape of the answer distribution
    (normalised entropy and the majority answer's share, which expose label bias).
    """
    n = max(len(answers), 1)
    probs = [c / n for c in Counter(answers).values()]
    entropy = -sum(p * math.log(p) for p in probs)
    norm = math.log(n) if n > 1 else 1.0
    return [reward, dense, compliance, entropy / norm, max(probs, default=0.0)]


def payload_text(edit: Edit) -> str:
    """The edit's payload as text (demonstrations and formats flattened), for the edit embedding."""
    p = edit.payload
    if isinstance(p, dict) and "input" in p:
        return f"{p['input']} -> {p['output']}"
    if isinstance(p, dict):
        return f"{p.get('spec', '')} {p.get('template', '')}".strip()
    return "" if p is None else str(p)


def task_pair_texts(task: Task, k: int) -> list[str]:
    """The task as its first ``k`` train input/output pairs (the train split's seeded order), as texts."""
    return [f"Input: {ex.input}\nOutput: {ex.answer}" for ex in task.train[:k]]


def response_fields(ev: Evaluation, prefix: str) -> dict:
    return {
        f"{prefix}reward": ev.accuracy,
        f"{prefix}dense": ev.dense,
        f"{prefix}compliance": ev.compliance,
        f"{prefix}correct": [r.correct for r in ev.results],
        f"{prefix}gold_prob": [r.gold_prob for r in ev.results],
        f"{prefix}answers": [r.extracted for r in ev.results],
    }


def triple_row(task: str, trajectory: int, step: int, chain: Chain, edit: Edit, nxt: Chain, ev: Evaluation,
               ev_next: Evaluation, example_uids: list[int] | None = None, **extra) -> dict:
    """One edit as a row (the module docstring's format). ``example_uids``: the examples both chains were
    evaluated on (default: those of ``ev``); ``extra`` adds the fields a writer owns (sibling group,
    context, task pairs, source).
    """
    return {"task": task, "trajectory": trajectory, "step": step, **extra,
            "chain": chain.to_json(), "edit": edit.to_json(), "next_chain": nxt.to_json(),
            "scale": edit.scale, "op": edit.op, "op_id": edit.op_id,
            "example_uids": list(example_uids) if example_uids is not None else [r.uid for r in ev.results],
            **response_fields(ev, ""), **response_fields(ev_next, "next_"),
            "next_responses": [r.response for r in ev_next.results]}
