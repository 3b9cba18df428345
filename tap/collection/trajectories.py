"""Collect edit trajectories ``c_0 -a_0-> c_1 -a_1-> ...`` on the real frozen LLM.

Every step is stored as one chain-edit-response triple (the chain, the edit, the next chain, and
how the LLM responded to both) in an HF ``datasets`` folder under ``data/``. With ``siblings=K``,
every visited chain gets K sibling edits (distinct children, the three scales mixed as the behaviour
policy draws them), each evaluated on the same examples as its parent; one row per sibling, with the
group (``group``, ``parent_id``, ``sibling``) and which one the trajectory continued from (``chosen``,
a seeded uniform pick). Sibling groups are what a search decides between. Collection is a
deterministic function of its config and seed, and every LLM call goes through the on-disk cache:
a killed run, started again, replays what was paid from the cache and carries on, losing nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from tap.chains import apply_edit, edit_space, initial_chain
from tap.chains.chain import Chain
from tap.chains.induce import default_count, induce_instructions
from tap.collection.behaviour import BehaviourPolicy
from tap.collection.schema import triple_row
from tap.env import Environment
from tap.errors import TapError
from tap.llm.base import LLM, GenerationSettings
from tap.paths import ensure_writable
from tap.tasks import Task, load_task, task_slug

#: fields added after collections were first stored, with the default that means "as before"
LATER_FIELDS = {"induce": None, "proposer": None, "siblings": 0}


@dataclass(frozen=True)
class CollectionConfig:
    """What defines a collection (and so its folder under ``data/``)."""

    task: str
    model: str = "smollm2"
    trajectories: int = 8
    horizon: int = 6
    eval_examples: int = 16
    seed: int = 0
    mode: str = "auto"
    max_new_tokens: int = 24
    scale_weights: dict[str, float] = field(default_factory=lambda: dict(BehaviourPolicy.DEFAULT_WEIGHTS))
    induce: int | None = None  # induced instructions in the edit space (None: tap.chains.induce.default_count)
    proposer: str | None = None  # the LLM that induces them (None: the frozen LLM)
    siblings: int = 0  # sibling edits evaluated at every visited chain (0: one edit per step)

    def fingerprint(self, llm_name: str) -> str:
        fields = asdict(self)
        for name, default in LATER_FIELDS.items():  # at their defaults, old collections keep their folder
            if fields[name] == default:
                del fields[name]
        blob = json.dumps({**fields, "llm": llm_name}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def dataset_dir(config: CollectionConfig, llm_name: str, data_dir: str | Path = "data") -> Path:
    """``data/<Task.slug>/<config fingerprint>``: one folder per distinct collection (the fingerprint holds
    the full task spec, so two tasks with one slug never share a folder). A collection written before
    folders were named by the slug (``data/<spec with : and / as _>/...``) is used where it is.
    """
    fingerprint = config.fingerprint(llm_name)
    folder = Path(data_dir) / task_slug(config.task) / fingerprint
    legacy = Path(data_dir) / re.sub(r"[^A-Za-z0-9_.-]+", "_", config.task).strip("_") / fingerprint
    return legacy if not folder.exists() and legacy.exists() else folder


def collect(config: CollectionConfig, llm: LLM, data_dir: str | Path = "data", task: Task | None = None,
            progress: bool = True, proposer: LLM | None = None) -> dict:
    """Collect ``config.trajectories`` trajectories of ``config.horizon`` edits; save; return a summary.

    Trajectory 0 starts from the task's own instruction, the others from random chains, so the
    data covers the edit space around both. All chains are evaluated on the same first
    ``eval_examples`` val examples (demonstrations come from train only). Instructions induced from
    train pairs (``config.induce``, by ``proposer`` or the frozen LLM) join the edit space's library.
    """
    import datasets

    start = time.time()
    ensure_writable(data_dir, "--data-dir")  # before the first paid call
    task = task or load_task(config.task, seed=config.seed)
    if config.siblings < 0:
        raise TapError(f"siblings must be >= 0 (got {config.siblings}).")
    env = Environment(llm, task, mode=config.mode,  # type: ignore[arg-type]
                      generation=GenerationSettings(max_new_tokens=config.max_new_tokens),
                      eval_examples=config.eval_examples)
    examples = env.order[: env.eval_examples]  # the first eval_examples val examples, for every chain
    induction = induce_instructions(proposer or llm, task, n=default_count(task, config.induce), seed=config.seed)
    space = edit_space(task, induced=induction.instructions)
    policy = BehaviourPolicy(space, config.scale_weights)
    calls0, hits0 = getattr(llm, "calls", 0), getattr(llm, "hits", 0)
    rows: list[dict] = []
    bar = tqdm(total=config.trajectories * config.horizon * max(config.siblings, 1), desc=f"collect {task.name}",
               disable=not progress, unit="edit")
    for traj in range(config.trajectories):
        rng = random.Random(f"collect:{config.task}:{config.seed}:{traj}")
        chain: Chain = initial_chain(task.description) if traj == 0 else space.random_chain(rng)
        ev = env.evaluate_at(chain)
        for step in range(config.horizon):
            if config.siblings:
                group = policy.siblings(chain, config.siblings, rng)
                pick = rng.randrange(len(group))
            else:
                edit = policy.act(chain, rng)
                group, pick = [(edit, apply_edit(chain, edit))], 0
            parent_id = hashlib.sha256(chain.to_json().encode()).hexdigest()[:16]
            for i, (edit, nxt) in enumerate(group):
                ev_next = env.evaluate_at(nxt)  # the parent's examples: paired, each pair paid once
                rows.append(triple_row(task.name, traj, step, chain, edit, nxt, ev, ev_next,
                                       example_uids=[ex.uid for ex in examples], group=f"{traj}:{step}",
                                       parent_id=parent_id, sibling=i, chosen=i == pick))
                if i == pick:
                    chosen = (nxt, ev_next)
                bar.update()
            chain, ev = chosen
            bar.set_postfix(calls=getattr(llm, "calls", 0) - calls0, hits=getattr(llm, "hits", 0) - hits0,
                            reward=f"{ev.accuracy:.2f}")
    bar.close()
    out = dataset_dir(config, llm.name, data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=out.name + ".tmp"))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp / "triples"))
    seconds = time.time() - start
    summary = {
        "task": task.name, "model": llm.name, "mode": env.mode, "path": str(out),
        "triples": len(rows), "trajectories": config.trajectories, "siblings": config.siblings,
        "llm_calls": getattr(llm, "calls", 0) - calls0, "cache_hits": getattr(llm, "hits", 0) - hits0,
        "chain_evaluations": env.chain_evals, "example_evaluations": env.example_evals,
        "induced_instructions": list(induction.instructions), "proposer_requests": induction.requests,
        "proposer_llm_calls": induction.llm_calls, "proposer_cache_hits": induction.cache_hits,
        "mean_reward": sum(r["next_reward"] for r in rows) / max(len(rows), 1),
        "mean_dense": sum(r["next_dense"] for r in rows) / max(len(rows), 1),
        "seconds": round(seconds, 2),
    }
    (tmp / "meta.json").write_text(json.dumps({"config": asdict(config), "summary": summary}, indent=1))
    if out.exists():  # a re-collection with the same config replaces the old copy atomically enough
        shutil.rmtree(out)
    os.replace(tmp, out)
    return summary
