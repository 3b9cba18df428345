"""Edit operators at three scales, their JSON form, and a sampler over the valid edits of a chain.

An edit is ``(scale, op, target, payload)``; applying it returns a new chain or raises
``EditError`` saying why it cannot apply. It is never a silent no-op.

=============  ================  ==========================  =====================================
scale          op                target                      payload
=============  ================  ==========================  =====================================
token          add               (segment, position)         phrase inserted before word position
token          delete            (segment, position)         -
token          replace           (segment, position)         phrase replacing that word
token          swap              (segment, position)         - (swaps words position, position+1)
segment        reorder           (step, new_index)           -
segment        split             (step, word_position)       -
segment        merge             (step,)                     - (merges step and step+1)
segment        insert            (index,)                    step text
segment        delete            (step,)                     -
instruction    add_example       (index,)                    {"uid", "input", "output"} (train only)
instruction    remove_example    (index,)                    -
instruction    instruction_edit  ()                          new instruction text
instruction    format_change     ()                          {"spec", "template"}
=============  ================  ==========================  =====================================

Segment 0 is the instruction and segment i >= 1 is step i-1 (see ``Chain.segments``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tap.chains.chain import AnswerFormat, Chain, Demo
from tap.chains.library import Libraries
from tap.errors import ChainError, EditError

OPS: dict[str, tuple[str, ...]] = {
    "token": ("add", "delete", "replace", "swap"),
    "segment": ("reorder", "split", "merge", "insert", "delete"),
    "instruction": ("add_example", "remove_example", "instruction_edit", "format_change"),
}
SCALES: tuple[str, ...] = tuple(OPS)
#: a flat id per (scale, op), written out so that it stays stable across versions: the world model embeds
#: these ids, so an existing id never changes; a new operator takes the next free id (append only)
OP_IDS: dict[tuple[str, str], int] = {
    ("token", "add"): 0, ("token", "delete"): 1, ("token", "replace"): 2, ("token", "swap"): 3,
    ("segment", "reorder"): 4, ("segment", "split"): 5, ("segment", "merge"): 6, ("segment", "insert"): 7,
    ("segment", "delete"): 8, ("instruction", "add_example"): 9, ("instruction", "remove_example"): 10,
    ("instruction", "instruction_edit"): 11, ("instruction", "format_change"): 12,
}
#: how many integers each (scale, op) takes as its target (see the table above)
_TARGET_LEN: dict[tuple[str, str], int] = {
    **{("token", op): 2 for op in OPS["token"]},
    ("segment", "reorder"): 2, ("segment", "split"): 2, ("segment", "merge"): 1, ("segment", "insert"): 1,
    ("segment", "delete"): 1, ("instruction", "add_example"): 1, ("instruction", "remove_example"): 1,
    ("instruction", "instruction_edit"): 0, ("instruction", "format_change"): 0,
}


@dataclass(frozen=True)
class Edit:
    """One chain edit. ``payload`` is text, a demonstration dict or an answer-format dict."""

    scale: str
    op: str
    target: tuple[int, ...] = ()
    payload: Any = None

    def __post_init__(self) -> None:
        if self.scale not in OPS:
            raise EditError(f"unknown edit scale {self.scale!r}; scales are {list(SCALES)}.")
        if self.op not in OPS[self.scale]:
            raise EditError(f"unknown {self.scale} op {self.op!r}; {self.scale} ops are {list(OPS[self.scale])}.")
        try:
            target = tuple(int(t) for t in self.target)
        except (TypeError, ValueError):
            raise EditError(f"an edit target must be a list of integers, got {self.target!r}.") from None
        object.__setattr__(self, "target", target)
        want = _TARGET_LEN[(self.scale, self.op)]
        if len(self.target) != want:
            raise EditError(f"{self.scale}.{self.op} takes a target of {want} integers, got {list(self.target)}.")

    @property
    def op_id(self) -> int:
        return OP_IDS[(self.scale, self.op)]

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "op": self.op, "target": list(self.target), "payload": self.payload}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Edit:
        if not isinstance(data, dict):
            raise EditError(f"an edit must be a JSON object (scale, op, target, payload), got {type(data).__name__}.")
        missing = {"scale", "op"} - set(data)
        if missing:
            raise EditError(f"edit JSON lacks {sorted(missing)}; expected scale, op, target, payload.")
        target = data.get("target", ())
        if not isinstance(target, list | tuple):
            raise EditError(f"an edit target must be a list of integers, got {target!r}.")
        return cls(data["scale"], data["op"], tuple(target), data.get("payload"))

    @classmethod
    def from_json(cls, text: str) -> Edit:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise EditError(f"edit is not valid JSON: {err}") from err

    def describe(self) -> str:
        payload = self.payload
        if isinstance(payload, dict) and "input" in payload:
            payload = f"demo uid {payload.get('uid')}"
        elif isinstance(payload, dict):
            payload = payload.get("spec") or payload.get("template")
        return f"{self.scale}.{self.op}{list(self.target)}" + (f" {payload!r}" if payload is not None else "")


def _text_payload(edit: Edit) -> str:
    if not isinstance(edit.payload, str) or not edit.payload.strip():
        raise EditError(f"{edit.scale}.{edit.op} needs a non-empty text payload, got {edit.payload!r}.")
    return edit.payload.strip()


def _check(cond: bool, edit: Edit, why: str) -> None:
    if not cond:
        raise EditError(f"cannot apply {edit.describe()}: {why}")


def apply_edit(chain: Chain, edit: Edit) -> Chain:
    """Apply ``edit`` to ``chain`` and return the new chain (``EditError`` if it cannot apply)."""
    t, op = edit.target, edit.op
    if edit.scale == "token":
        seg, pos = t
        _check(0 <= seg < len(chain.segments), edit,
               f"segment {seg} does not exist (the chain has {len(chain.segments)}: 0 = instruction, 1.. = steps).")
        words = chain.words(seg)
        if op == "add":
            _check(0 <= pos <= len(words), edit, f"position {pos} is outside 0..{len(words)}.")
            words[pos:pos] = _text_payload(edit).split()
        else:
            limit = len(words) - (1 if op == "swap" else 0)
            _check(0 <= pos < limit, edit, f"word position {pos} is outside 0..{limit - 1} "
                   f"(segment {seg} has {len(words)} words).")
            if op == "delete":
                _check(len(words) > 1 or seg == 0, edit, "deleting the only word leaves an empty step; "
                       "use segment.delete instead.")
                del words[pos]
            elif op == "replace":
                new = _text_payload(edit)
                _check(new != words[pos], edit, f"word {pos} is already {new!r}.")
                words[pos : pos + 1] = new.split()
            else:  # swap
                _check(words[pos] != words[pos + 1], edit, "the two words are the same.")
                words[pos], words[pos + 1] = words[pos + 1], words[pos]
        return chain.with_segment(seg, " ".join(words))

    if edit.scale == "segment":
        steps = list(chain.steps)
        n = len(steps)
        if op == "insert":
            (idx,) = t
            _check(0 <= idx <= n, edit, f"insert index {idx} is outside 0..{n}.")
            text = _text_payload(edit)
            _check(text not in steps, edit, "that step is already in the chain.")
            steps.insert(idx, text)
        else:
            i = t[0]
            _check(0 <= i < n, edit, f"step {i} does not exist (the chain has {n} steps).")
            if op == "delete":
                del steps[i]
            elif op == "reorder":
                j = t[1]
                _check(0 <= j < n and j != i, edit, f"new index {j} must be in 0..{n - 1} and differ from {i}.")
                steps.insert(j, steps.pop(i))
            elif op == "split":
                words = steps[i].split()
                pos = t[1]
                _check(0 < pos < len(words), edit, f"split position {pos} must be inside 1..{len(words) - 1}.")
                steps[i : i + 1] = [" ".join(words[:pos]), " ".join(words[pos:])]
            else:  # merge
                _check(i + 1 < n, edit, f"step {i} is the last one; there is no next step to merge with.")
                steps[i : i + 2] = [f"{steps[i]} {steps[i + 1]}"]
        return replace(chain, steps=tuple(steps))

    # instruction scale
    demos = list(chain.demos)
    if op == "add_example":
        (idx,) = t
        _check(0 <= idx <= len(demos), edit, f"insert index {idx} is outside 0..{len(demos)}.")
        p = edit.payload
        _check(isinstance(p, dict) and {"uid", "input", "output"} <= set(p), edit,
               "payload must be a demonstration {'uid', 'input', 'output'} from the train split.")
        try:
            uid = int(p["uid"])
        except (TypeError, ValueError):
            raise EditError(f"cannot apply {edit.describe()}: demo uid {p['uid']!r} is not an integer.") from None
        _check(all(d.uid != uid for d in demos), edit, f"demonstration uid {uid} is already in the chain.")
        demos.insert(idx, Demo(uid, str(p["input"]), str(p["output"])))
        return replace(chain, demos=tuple(demos))
    if op == "remove_example":
        (idx,) = t
        _check(0 <= idx < len(demos), edit, f"demonstration {idx} does not exist (the chain has {len(demos)}).")
        del demos[idx]
        return replace(chain, demos=tuple(demos))
    if op == "instruction_edit":
        text = _text_payload(edit)
        _check(text != chain.instruction, edit, "the instruction is already that text.")
        return replace(chain, instruction=text)
    p = edit.payload
    _check(isinstance(p, dict) and "template" in p, edit, "payload must be an answer format {'spec', 'template'}.")
    try:
        fmt = AnswerFormat(str(p.get("spec", "")), str(p["template"]))
    except ChainError as err:
        raise EditError(f"cannot apply {edit.describe()}: {err}") from err
    _check(fmt != chain.answer_format, edit, "the chain already uses that answer format.")
    return replace(chain, answer_format=fmt)


def replay(chain: Chain, edits: Sequence[Edit | dict]) -> Chain:
    """Apply a sequence of edits (objects or their JSON dicts) in order."""
    for e in edits:
        chain = apply_edit(chain, e if isinstance(e, Edit) else Edit.from_dict(e))
    return chain


class EditSpace:
    """The finite set of edits a chain admits, given payload libraries and a train-split demo pool.

    ``sample`` draws a valid edit: a scale by ``scale_weights``, then an op, target and payload
    uniformly among those that apply; ``propose`` draws a menu of distinct ones across the three scales
    (what a planner chooses from). Demonstrations only ever come from ``demo_pool`` (the train split),
    never from val or test.
    """

    def __init__(self, libraries: Libraries, demo_pool: Sequence[Demo], max_demos: int = 8,
                 max_steps: int = 8) -> None:
        self.libraries = libraries
        self.demo_pool = list(demo_pool)
        self.max_demos = max_demos
        self.max_steps = max_steps

    def random_chain(self, rng: random.Random, max_demos: int = 3, max_steps: int = 3) -> Chain:
        """A random starting chain: library instruction and format, 0..max_steps steps and
        0..max_demos demonstrations from the train pool.
        """
        lib = self.libraries
        fmt = rng.choice(lib.formats)
        steps = rng.sample(lib.steps, rng.randint(0, min(max_steps, len(lib.steps))))
        demos = rng.sample(self.demo_pool, rng.randint(0, min(max_demos, len(self.demo_pool))))
        return Chain(rng.choice(lib.instructions), fmt, tuple(steps), tuple(demos)).validate()

    def candidates(self, chain: Chain, scale: str, op: str, rng: random.Random) -> Edit | None:
        """One random valid edit of (scale, op) for ``chain``, or None if that op cannot apply."""
        lib = self.libraries
        n_steps, n_demos = len(chain.steps), len(chain.demos)
        segs = [i for i, s in enumerate(chain.segments) if s.split()]
        if scale == "token":
            if op == "add":
                seg = rng.randrange(len(chain.segments))
                return Edit(scale, op, (seg, rng.randint(0, len(chain.words(seg)))), rng.choice(lib.phrases))
            if op == "swap":
                segs = [i for i in segs if len(chain.words(i)) >= 2]
            if op == "delete":
                segs = [i for i in segs if i == 0 or len(chain.words(i)) >= 2]
            if not segs:
                return None
            seg = rng.choice(segs)
            n = len(chain.words(seg))
            pos = rng.randrange(n - 1 if op == "swap" else n)
            payload = rng.choice(lib.phrases) if op == "replace" else None
            return Edit(scale, op, (seg, pos), payload)
        if scale == "segment":
            if op == "insert":
                fresh = [s for s in lib.steps if s not in chain.steps]
                if not fresh or n_steps >= self.max_steps:
                    return None
                return Edit(scale, op, (rng.randint(0, n_steps),), rng.choice(fresh))
            if n_steps == 0 or (op in ("reorder", "merge") and n_steps < 2):
                return None
            if op == "split":
                long = [i for i, s in enumerate(chain.steps) if len(s.split()) >= 2]
                if not long or n_steps >= self.max_steps:
                    return None
                i = rng.choice(long)
                return Edit(scale, op, (i, rng.randint(1, len(chain.steps[i].split()) - 1)))
            i = rng.randrange(n_steps - 1 if op == "merge" else n_steps)
            if op == "reorder":
                return Edit(scale, op, (i, rng.choice([j for j in range(n_steps) if j != i])))
            return Edit(scale, op, (i,))
        if op == "add_example":
            used = {d.uid for d in chain.demos}
            fresh = [d for d in self.demo_pool if d.uid not in used]
            if not fresh or n_demos >= self.max_demos:
                return None
            d = rng.choice(fresh)
            return Edit(scale, op, (rng.randint(0, n_demos),), {"uid": d.uid, "input": d.input, "output": d.output})
        if op == "remove_example":
            return Edit(scale, op, (rng.randrange(n_demos),)) if n_demos else None
        if op == "instruction_edit":
            fresh = [s for s in lib.instructions if s != chain.instruction]
            return Edit(scale, op, (), rng.choice(fresh)) if fresh else None
        fresh_f = [f for f in lib.formats if f != chain.answer_format]
        if not fresh_f:
            return None
        f = rng.choice(fresh_f)
        return Edit(scale, op, (), {"spec": f.spec, "template": f.template})

    def sample(self, chain: Chain, rng: random.Random, scale_weights: dict[str, float] | None = None) -> Edit:
        """A random edit that applies to ``chain`` (and leaves it non-empty)."""
        weights = scale_weights or {s: 1.0 for s in SCALES}
        scales = [s for s in SCALES if weights.get(s, 0) > 0]
        if not scales:
            raise EditError(f"scale_weights {weights} give no scale a positive weight.")
        for _ in range(100):
            scale = rng.choices(scales, weights=[weights[s] for s in scales])[0]
            edit = self.candidates(chain, scale, rng.choice(OPS[scale]), rng)
            if edit is None:
                continue
            try:
                apply_edit(chain, edit).validate()
            except Exception:  # noqa: BLE001 - an invalid draw is simply redrawn
                continue
            return edit
        raise EditError(f"no valid edit found for this chain with scales {scales}:\n{chain.describe()}")

    def propose(self, chain: Chain, k: int, rng: random.Random, tries: int = 30) -> list[Edit]:
        """Up to ``k`` valid edits of ``chain`` that lead to ``k`` distinct chains, taking the three scales
        in turn (instruction, segment, token) so that every scale is on the menu.

        Raises ``EditError`` when the chain admits no edit at all.
        """
        if k < 1:
            raise EditError(f"a planner needs at least one candidate edit per step, got candidates={k}.")
        out: list[Edit] = []
        seen = {chain.to_json()}
        for slot in range(k * 2):  # each slot asks one scale for a fresh edit; a scale with none is skipped
            if len(out) == k:
                break
            scale = SCALES[slot % len(SCALES)]
            for _ in range(tries):
                edit = self.candidates(chain, scale, rng.choice(OPS[scale]), rng)
                if edit is None:
                    continue
                try:
                    key = apply_edit(chain, edit).validate().to_json()
                except Exception:  # noqa: BLE001 - an invalid draw is simply redrawn
                    continue
                if key not in seen:
                    seen.add(key)
                    out.append(edit)
                    break
        if not out:
            raise EditError(f"no valid edit applies to this chain:\n{chain.describe()}")
        return out
