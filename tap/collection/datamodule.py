"""The LightningDataModule of chain-edit-response triples.

``prepare_data`` collects (through the LLM cache) any task whose collection is not on disk yet;
``setup`` loads the triples and splits them *by trajectory* (never by step, so a held-out
trajectory is wholly unseen) into train / val / test. An item is a window of ``window``
consecutive edits of one trajectory: the chains ``c_t .. c_{t+window}`` at each scale, the edits
between them, and how the LLM responded to every chain (the world model's rollout targets).
With sibling data (``siblings=K``), windows follow the edits each trajectory continued from, and
``sibling_dataloader`` serves the sibling groups: every edit evaluated at one parent chain, on the
parent's examples (the decision a search makes); the train / val / test loaders then serve both, as
``{"windows": ..., "siblings": ...}`` (Lightning's ``CombinedLoader``).

Every item also carries the task as ``task_pairs`` train input/output pairs (``task_pair_texts``):
what a world model conditions on, so that a task never trained on needs no collection.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from tap.chains.chain import Chain
from tap.chains.edits import Edit
from tap.chains.render import chain_views
from tap.collection.schema import (  # noqa: F401 - re-exported: the row schema's names, where they were
    RESPONSE_FEATURES,
    SCALE_IDS,
    payload_text,
    response_summary,
    task_pair_texts,
)
from tap.collection.trajectories import CollectionConfig, collect, dataset_dir
from tap.errors import TapError


class SiblingGroups(Dataset):
    """Groups of sibling edits of one parent chain (at least two per group)."""

    def __init__(self, groups: list[list[dict]]) -> None:
        self.items = [g for g in groups if len(g) >= 2]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> list[dict]:
        return self.items[idx]


def collate_siblings(batch: list[list[dict]]) -> dict:
    """Stack sibling groups: every sibling is a one-edit window (``collate_windows``, N = all siblings of
    the batch) plus ``group`` (N,) long, the index of its group in the batch.
    """
    rows = [row for group in batch for row in group]
    out = collate_windows([[row] for row in rows])
    out["group"] = torch.tensor([g for g, group in enumerate(batch) for _ in group], dtype=torch.long)
    return out


class TrajectoryWindows(Dataset):
    """Windows of ``window`` consecutive steps from whole trajectories."""

    def __init__(self, trajectories: list[list[dict]], window: int) -> None:
        self.items = [traj[s : s + window] for traj in trajectories for s in range(len(traj) - window + 1)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> list[dict]:
        return self.items[idx]


def _chain_state(chain_json: str, reward: float, dense: float, compliance: float, correct: list[bool],
                 gold: list[float], answers: list[str]) -> dict:
    chain = Chain.from_json(chain_json)
    return {"views": chain_views(chain), "reward": reward, "dense": dense,
            "summary": response_summary(reward, dense, compliance, answers),
            "correct": [float(c) for c in correct], "gold_prob": gold}


def collate_windows(batch: list[list[dict]]) -> dict:
    """Stack windows into a batch. B = batch, L = window, E = evaluated examples per chain.

    Returns: ``task`` list[B]; ``context`` list[B] (the task's description, the encoder's task
    context); ``task_pairs`` list[B] of list[str] (``task_pair_texts``);
    ``instruction_text``/``token_text`` list[B][L+1] of str;
    ``segments`` list[B][L+1] of list[str]; ``edit_scale``/``edit_op`` (B, L) long;
    ``edit_target`` (B, L, 2) long (-1 = none); ``edit_payload`` list[B][L] of str;
    ``edit_json`` list[B][L]; ``chain_json`` list[B][L+1]; ``reward``/``dense`` (B, L+1); ``response`` (B, L+1, F);
    ``correct``/``gold_prob`` (B, L+1, E) with ``example_mask`` (B, E).
    """
    B, L_ = len(batch), len(batch[0])
    E = max(len(w[0]["example_uids"]) for w in batch)
    out: dict = {"task": [w[0]["task"] for w in batch], "context": [w[0].get("context", "") for w in batch],
                 "task_pairs": [list(w[0].get("task_pairs", [])) for w in batch],
                 "instruction_text": [], "token_text": [], "segments": [],
                 "edit_payload": [], "edit_json": [], "chain_json": []}
    scale = torch.zeros(B, L_, dtype=torch.long)
    op = torch.zeros(B, L_, dtype=torch.long)
    target = torch.full((B, L_, 2), -1, dtype=torch.long)
    reward = torch.zeros(B, L_ + 1)
    dense = torch.zeros(B, L_ + 1)
    response = torch.zeros(B, L_ + 1, len(RESPONSE_FEATURES))
    correct = torch.zeros(B, L_ + 1, E)
    gold = torch.zeros(B, L_ + 1, E)
    mask = torch.zeros(B, E, dtype=torch.bool)
    for b, window in enumerate(batch):
        states = [_chain_state(window[0]["chain"], window[0]["reward"], window[0]["dense"], window[0]["compliance"],
                               window[0]["correct"], window[0]["gold_prob"], window[0]["answers"])]
        for row in window:
            states.append(_chain_state(row["next_chain"], row["next_reward"], row["next_dense"],
                                       row["next_compliance"], row["next_correct"], row["next_gold_prob"],
                                       row["next_answers"]))
        out["chain_json"].append([window[0]["chain"]] + [row["next_chain"] for row in window])
        out["instruction_text"].append([s["views"]["instruction"] for s in states])
        out["token_text"].append([s["views"]["tokens"] for s in states])
        out["segments"].append([s["views"]["segments"] for s in states])
        payloads, jsons = [], []
        for t, row in enumerate(window):
            edit = Edit.from_json(row["edit"])
            scale[b, t] = SCALE_IDS[edit.scale]
            op[b, t] = edit.op_id
            target[b, t, : min(2, len(edit.target))] = torch.tensor(edit.target[:2], dtype=torch.long)
            payloads.append(payload_text(edit))
            jsons.append(row["edit"])
        out["edit_payload"].append(payloads)
        out["edit_json"].append(jsons)
        n = len(window[0]["example_uids"])
        mask[b, :n] = True
        for t, s in enumerate(states):
            reward[b, t], dense[b, t] = s["reward"], s["dense"]
            response[b, t] = torch.tensor(s["summary"])
            correct[b, t, :n] = torch.tensor(s["correct"])
            gold[b, t, :n] = torch.tensor(s["gold_prob"])
    out.update(edit_scale=scale, edit_op=op, edit_target=target, reward=reward, dense=dense, response=response,
               correct=correct, gold_prob=gold, example_mask=mask)
    return out


class TriplesDataModule(L.LightningDataModule):
    """Chain-edit-response triples for the encoder and the world model.

    Args:
        tasks: task specs to collect and serve (``ii:NAME``, ``bigbench:NAME`` or JSONL/CSV paths; default
            ``ii:sentiment``).
        model: the frozen LLM (``smollm2`` offline default, a local dir, or a hub id).
        trajectories: trajectories collected per task.
        horizon: edits per trajectory.
        eval_examples: val examples each chain is evaluated on.
        window: consecutive edits per item (1 = single triples; H for H-step rollouts).
        batch_size: items per batch.
        split_fractions: fractions of trajectories (per task) for val and test; train keeps the rest.
        val_tasks: tasks (of ``tasks``) whose every trajectory is validation data: tasks held out from
            training, so that checkpoint selection and the interval calibration (both on ``val``)
            measure transfer to tasks never trained on, the question a meta-trained model is asked.
        siblings: sibling edits collected at every visited chain (0: one edit per step); with 2 or more,
            the loaders serve sibling groups next to the windows.
        task_pairs: train input/output pairs per item that describe its task (``task_pair_texts``).
        seed: collection seed and the trajectory split's seed.
        samples: collection seeds served together (default: ``[seed]``). Each seed is an independent sample of
            every task's trajectories, search examples and task pairs (``python -m tap.collect --config C --seed S``
            collects one), split into train/val/test by its own seed: more test data per task for a held-out
            set, whose verdicts one sample of 32 sibling groups per task is too small to carry.
        data_dir: where collections live (``data/`` by default).
        cache: LLM call cache file (``default``: ``$TAP_CACHE/calls.sqlite``).
        mode: ``auto`` | ``generate`` | ``score``.
        max_new_tokens: generation length in generate mode.
        num_workers: DataLoader workers.
    """

    def __init__(self, tasks: list[str] | None = None, model: str = "smollm2", trajectories: int = 8,
                 horizon: int = 6, eval_examples: int = 16, window: int = 1, batch_size: int = 32,
                 split_fractions: tuple[float, float] = (0.15, 0.15), seed: int = 0, data_dir: str = "data",
                 cache: str = "default", mode: str = "auto", max_new_tokens: int = 24, num_workers: int = 0,
                 siblings: int = 0, task_pairs: int = 4, val_tasks: list[str] | None = None,
                 samples: list[int] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tasks = list(tasks or ["ii:sentiment"])
        self.val_tasks = set(val_tasks or [])
        if not self.val_tasks <= set(self.tasks) or self.val_tasks == set(self.tasks):
            raise TapError(f"val_tasks {sorted(self.val_tasks)} must be some, not all, of tasks {self.tasks}: they "
                           "are held out from training as validation data.")
        if not 1 <= window <= horizon:
            raise TapError(f"window={window} must be between 1 and horizon={horizon}.")
        val_f, test_f = split_fractions
        if not (0 <= val_f <= 1 and 0 <= test_f <= 1 and val_f + test_f <= 1):
            raise TapError(f"split_fractions {split_fractions} must be two fractions in [0, 1] summing to at most 1 "
                           "(0.0, 1.0 makes every trajectory test data, for a task held out from training).")
        if samples is not None and not samples:
            raise TapError("samples must name at least one collection seed (or be left out: [seed]).")
        self.samples = list(dict.fromkeys(samples)) if samples else [seed]  # collection seeds, each once
        self.configs = [CollectionConfig(task=t, model=model, trajectories=trajectories, horizon=horizon,
                                         eval_examples=eval_examples, seed=s, mode=mode,
                                         max_new_tokens=max_new_tokens, siblings=siblings)
                        for t in self.tasks for s in self.samples]
        self._llm = None
        self.splits: dict[str, TrajectoryWindows] = {}
        self.groups: dict[str, SiblingGroups] = {}

    @property
    def llm(self):
        """The frozen LLM behind the cache, built on first need (weights load on the first paid call)."""
        if self._llm is None:
            from tap.llm import load_llm

            self._llm = load_llm(self.hparams.model, cache=self.hparams.cache)
        return self._llm

    def _dir(self, config: CollectionConfig) -> Path:
        return dataset_dir(config, self.llm.name, self.hparams.data_dir)

    def prepare_data(self) -> None:
        for config in self.configs:
            if not (self._dir(config) / "triples").exists():
                collect(config, self.llm, data_dir=self.hparams.data_dir)

    def setup(self, stage: str | None = None) -> None:
        import datasets

        if self.splits:
            return
        parts: dict[str, list[list[dict]]] = {"train": [], "val": [], "test": []}
        groups: dict[str, list[list[dict]]] = {"train": [], "val": [], "test": []}
        val_f, test_f = self.hparams.split_fractions
        for config in self.configs:
            path = self._dir(config) / "triples"
            if not path.exists():
                raise TapError(f"no collected triples for {config.task} (sample {config.seed}) at {path}; run "
                               "prepare_data() (Trainer.fit does) or `python -m tap.collect --config <this data "
                               f"config> --task {config.task} --seed {config.seed}` first.")
            rows = datasets.load_from_disk(str(path)).to_list()
            context, pairs = self.context(config.task, config.seed), self.task_pairs(config.task, config.seed)
            for row in rows:
                row["context"], row["task_pairs"], row["sample"] = context, pairs, config.seed
            by_traj: dict[int, list[dict]] = defaultdict(list)
            by_group: dict[int, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
            for row in rows:
                if row.get("chosen", True):  # the edit the trajectory continued from (every row before siblings)
                    by_traj[row["trajectory"]].append(row)
                by_group[row["trajectory"]][row["step"]].append(row)
            ids = sorted(by_traj)
            random.Random(f"traj-split:{config.task}:{config.seed}").shuffle(ids)  # each sample by its own seed
            n_val = round(len(ids) * val_f)
            n_test = round(len(ids) * test_f)
            if len(ids) >= 3:  # keep every split non-empty when there is enough data
                n_val, n_test = max(n_val, 1 if val_f > 0 else 0), max(n_test, 1 if test_f > 0 else 0)
            chosen = {"val": ids[:n_val], "test": ids[n_val : n_val + n_test], "train": ids[n_val + n_test :]}
            if config.task in self.val_tasks:  # held out from training: all validation
                chosen = {"val": ids, "test": [], "train": []}
            for split, traj_ids in chosen.items():
                parts[split] += [sorted(by_traj[i], key=lambda r: r["step"]) for i in sorted(traj_ids)]
                groups[split] += [sorted(by_group[i][step], key=lambda r: r.get("sibling", 0))
                                  for i in sorted(traj_ids) for step in sorted(by_group[i])]
        self.splits = {s: TrajectoryWindows(t, self.hparams.window) for s, t in parts.items()}
        self.groups = {s: SiblingGroups(g) for s, g in groups.items()}
        self.edit_rows = {s: [r for group in g for r in group] for s, g in groups.items()}  # every edit once

    def op_effects(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """Every edit of ``split`` once (chosen and sibling edits alike): its operation id (N,) long and the
        accuracy change it made (N,), what the world model's non-learned prior is counted from.
        """
        if not self.splits:
            self.setup()
        rows = self.edit_rows[split]
        ops = torch.tensor([r["op_id"] for r in rows], dtype=torch.long)
        delta = torch.tensor([r["next_reward"] - r["reward"] for r in rows], dtype=torch.float32)
        return ops, delta

    def context(self, task: str, sample: int | None = None) -> str:
        """The task context the encoder sees: the task's own description (as loaded for collection seed
        ``sample``, default ``seed``).
        """
        from tap.tasks import load_task

        return load_task(task, seed=self.hparams.seed if sample is None else sample).description

    def task_pairs(self, task: str, sample: int | None = None) -> list[str]:
        """The task as ``task_pairs`` of its train input/output pairs (``task_pair_texts``), those of collection
        seed ``sample`` (default ``seed``): what a model sees of a task it never trained on.
        """
        from tap.tasks import load_task

        return task_pair_texts(load_task(task, seed=self.hparams.seed if sample is None else sample),
                               self.hparams.task_pairs)

    def _loader(self, split: str, shuffle: bool):
        """Windows of ``split``; with sibling groups, windows and groups together (``CombinedLoader``:
        training cycles the shorter one, evaluation visits each item once).
        """
        if not self.splits:
            self.setup()
        data = self.splits[split]
        if len(data) == 0:
            raise TapError(f"the {split} split has no items; collect more trajectories or change split_fractions.")
        windows = DataLoader(data, batch_size=self.hparams.batch_size, shuffle=shuffle, collate_fn=collate_windows,
                             num_workers=self.hparams.num_workers,
                             generator=torch.Generator().manual_seed(self.hparams.seed) if shuffle else None)
        if self.hparams.siblings < 2 or len(self.groups[split]) == 0:
            return windows
        from lightning.pytorch.utilities import CombinedLoader

        siblings = self.sibling_dataloader(split, shuffle=shuffle)
        return CombinedLoader({"windows": windows, "siblings": siblings},
                              mode="max_size_cycle" if split == "train" else "max_size")

    def sibling_dataloader(self, split: str, batch_size: int | None = None, shuffle: bool = False) -> DataLoader:
        """Batches of sibling groups of ``split`` (``collate_siblings``); empty without sibling data."""
        if not self.splits:
            self.setup()
        data = self.groups[split]
        if len(data) == 0:
            raise TapError(f"the {split} split has no sibling groups; collect with siblings >= 2 "
                           "(--data.init_args.siblings 6).")
        return DataLoader(data, batch_size=batch_size or max(1, self.hparams.batch_size // 6), shuffle=shuffle,
                          collate_fn=collate_siblings, num_workers=self.hparams.num_workers,
                          generator=torch.Generator().manual_seed(self.hparams.seed) if shuffle else None)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)

    def summary(self) -> dict:
        """Items per split and the collections behind them."""
        return {"items": {s: len(d) for s, d in self.splits.items()},
                "collections": [json.loads((self._dir(c) / "meta.json").read_text())["summary"] for c in self.configs]}
