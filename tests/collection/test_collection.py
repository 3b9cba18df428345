import json
import random
from pathlib import Path

import pytest

from tap.chains import Chain, Edit, apply_edit, edit_space
from tap.collection import BehaviourPolicy, CollectionConfig, collect, dataset_dir
from tap.collection.datamodule import TriplesDataModule
from tap.errors import TapError
from tap.llm import CachedLLM, CallCache


def _rows(summary):
    import datasets

    return datasets.load_from_disk(summary["path"] + "/triples").to_list()


def _cached(llm, path):
    return CachedLLM(llm, CallCache(path))


def test_collect_stores_replayable_triples_and_rerun_is_free(tiny_llm, tiny_task, tmp_path):
    config = CollectionConfig(task="tiny", trajectories=3, horizon=4, eval_examples=5, max_new_tokens=4)
    llm = _cached(tiny_llm, tmp_path / "calls.sqlite")
    first = collect(config, llm, data_dir=tmp_path / "data", task=tiny_task, progress=False)
    assert first["triples"] == 12 and first["trajectories"] == 3
    assert first["llm_calls"] > 0 and first["chain_evaluations"] == 3 * 5
    rows = _rows(first)
    assert [(r["trajectory"], r["step"]) for r in rows] == [(t, s) for t in range(3) for s in range(4)]
    val_uids = [ex.uid for ex in tiny_task.val[:5]]
    train_uids = {ex.uid for ex in tiny_task.train}
    for prev, row in zip(rows, rows[1:]):
        if prev["trajectory"] == row["trajectory"]:  # trajectories chain: c_{t+1} of one step is c_t of the next
            assert prev["next_chain"] == row["chain"] and prev["next_reward"] == row["reward"]
    for row in rows:
        assert apply_edit(Chain.from_json(row["chain"]), Edit.from_json(row["edit"])) == Chain.from_json(
            row["next_chain"])
        assert row["example_uids"] == val_uids
        assert all(d.uid in train_uids for d in Chain.from_json(row["next_chain"]).demos)
        assert row["next_reward"] == sum(row["next_correct"]) / 5
    assert rows[0]["chain"] == Chain(tiny_task.description or "Answer the question.").to_json()

    again = collect(config, _cached(tiny_llm, tmp_path / "calls.sqlite"), data_dir=tmp_path / "data",
                    task=tiny_task, progress=False)
    assert again["llm_calls"] == 0
    assert again["cache_hits"] == first["llm_calls"] + first["cache_hits"]
    assert _rows(again) == rows


def test_collect_is_deterministic_and_seed_dependent(tiny_llm, tiny_task, tmp_path):
    base = dict(task="tiny", trajectories=2, horizon=3, eval_examples=3, max_new_tokens=3)
    a = _rows(collect(CollectionConfig(**base), _cached(tiny_llm, None), tmp_path / "a", tiny_task, progress=False))
    b = _rows(collect(CollectionConfig(**base), _cached(tiny_llm, None), tmp_path / "b", tiny_task, progress=False))
    c = _rows(collect(CollectionConfig(**base, seed=1), _cached(tiny_llm, None), tmp_path / "c", tiny_task,
                      progress=False))
    assert a == b
    assert [r["edit"] for r in a] != [r["edit"] for r in c]


def test_dataset_dir_depends_on_config():
    a = dataset_dir(CollectionConfig(task="bigbench:x/y"), "m")
    assert a.parent.name == "x_y"  # Task.slug
    assert a != dataset_dir(CollectionConfig(task="ii:x_y"), "m")  # one slug, two tasks: two folders
    assert a != dataset_dir(CollectionConfig(task="bigbench:x/y", horizon=2), "m")
    assert a != dataset_dir(CollectionConfig(task="bigbench:x/y"), "other-model")


def test_dataset_dir_finds_a_collection_written_under_the_old_folder_name(tmp_path):
    config = CollectionConfig(task="bigbench:x/y")
    new = dataset_dir(config, "m", tmp_path)
    legacy = tmp_path / "bigbench_x_y" / new.name
    (legacy / "triples").mkdir(parents=True)
    assert dataset_dir(config, "m", tmp_path) == legacy
    (new / "triples").mkdir(parents=True)
    assert dataset_dir(config, "m", tmp_path) == new


def test_behaviour_policy_scale_weights(tiny_task):
    space = edit_space(tiny_task)
    rng = random.Random(0)
    only = BehaviourPolicy(space, {"instruction": 1.0, "segment": 0.0, "token": 0.0})
    chain = Chain("Add the numbers.")
    for _ in range(20):
        edit = only.act(chain, rng)
        assert edit.scale == "instruction"
        chain = apply_edit(chain, edit)
    mixed = BehaviourPolicy(space)
    scales = set()
    chain = Chain("Add the two numbers.", steps=("Read the question.", "Add them."))
    for _ in range(60):
        edit = mixed.act(chain, rng)
        scales.add(edit.scale)
        chain = apply_edit(chain, edit)
    assert scales == {"instruction", "segment", "token"}
    for bad in ({"words": 1.0}, {"token": 0.0}, {"token": -1.0, "segment": 2.0}):
        with pytest.raises(TapError, match="scale_weights"):
            BehaviourPolicy(space, bad)


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "add.jsonl"
    with path.open("w") as f:
        for i in range(60):
            f.write(json.dumps({"input": f"What is {i % 7} + {i % 5}?", "target": str(i % 7 + i % 5)}) + "\n")
    return str(path)


def _dm(task_file, tmp_path, tiny_llm, **kw):
    args = dict(tasks=[task_file], trajectories=6, horizon=3, eval_examples=4, window=2, batch_size=3,
                split_fractions=(0.2, 0.2), data_dir=str(tmp_path / "data"), max_new_tokens=3)
    args.update(kw)
    dm = TriplesDataModule(**args)
    dm._llm = _cached(tiny_llm, tmp_path / "calls.sqlite")
    return dm


def test_datamodule_collects_splits_by_trajectory_and_batches(task_file, tmp_path, tiny_llm):
    dm = _dm(task_file, tmp_path, tiny_llm)
    dm.prepare_data()
    calls = dm.llm.calls
    assert calls > 0
    dm.prepare_data()  # on disk already: nothing collected again
    assert dm.llm.calls == calls
    dm.setup("fit")
    trajs = {s: {(w[0]["task"], w[0]["trajectory"]) for w in d.items} for s, d in dm.splits.items()}
    assert trajs["train"] and trajs["val"] and trajs["test"]
    assert not (trajs["train"] & trajs["val"]) and not (trajs["train"] & trajs["test"])
    assert not (trajs["val"] & trajs["test"])
    assert sum(len(t) for t in trajs.values()) == 6
    assert len(dm.splits["train"]) == len(trajs["train"]) * 2  # horizon 3, window 2 -> 2 windows each
    batch = next(iter(dm.train_dataloader()))
    B = batch["reward"].shape[0]
    assert batch["reward"].shape == (B, 3) and batch["response"].shape == (B, 3, 5)
    assert batch["edit_op"].shape == (B, 2) and batch["edit_target"].shape == (B, 2, 2)
    assert batch["correct"].shape == (B, 3, 4) and batch["example_mask"].all()
    assert len(batch["instruction_text"][0]) == 3 and len(batch["edit_payload"][0]) == 2
    # rewards in the batch are the accuracy over the evaluated examples
    assert (batch["reward"] == batch["correct"].mean(-1)).all()
    # the same split again under the same seed
    dm2 = _dm(task_file, tmp_path, tiny_llm)
    dm2.setup("fit")
    assert [w[0]["trajectory"] for w in dm2.splits["val"].items] == [w[0]["trajectory"] for w in dm.splits["val"].items]


def test_val_tasks_are_held_out_from_training_whole(task_file, tmp_path, tiny_llm):
    other = tmp_path / "other.jsonl"
    other.write_text(Path(task_file).read_text())
    dm = _dm(task_file, tmp_path, tiny_llm, tasks=[task_file, str(other)], val_tasks=[str(other)])
    dm.prepare_data()
    dm.setup("fit")
    tasks = {s: {w[0]["task"] for w in d.items} for s, d in dm.splits.items()}
    held = next(t for t in tasks["val"] if "other" in t)
    assert held not in tasks["train"] and held not in tasks["test"]
    assert sum(w[0]["task"] == held for w in dm.splits["val"].items) == 6 * 2  # all 6 trajectories, 2 windows each
    assert tasks["train"] == {next(iter(tasks["train"]))} and "other" not in next(iter(tasks["train"]))
    ops, _ = dm.op_effects("train")  # the prior counts only the tasks trained on
    assert len(ops) == len(dm.edit_rows["train"]) and all("other" not in r["task"] for r in dm.edit_rows["train"])
    for bad in ([str(tmp_path / "missing.jsonl")], [task_file, str(other)]):
        with pytest.raises(TapError, match="val_tasks"):
            _dm(task_file, tmp_path, tiny_llm, tasks=[task_file, str(other)], val_tasks=bad)


def test_datamodule_bad_input(task_file, tmp_path, tiny_llm):
    with pytest.raises(TapError, match="window"):
        _dm(task_file, tmp_path, tiny_llm, window=4)
    with pytest.raises(TapError, match="split_fractions"):
        _dm(task_file, tmp_path, tiny_llm, split_fractions=(0.6, 0.5))
    dm = _dm(task_file, tmp_path, tiny_llm)
    with pytest.raises(TapError, match="prepare_data"):
        dm.setup("fit")


def test_collect_command_rejects_unknown_task_before_loading_a_model(capsys):
    from tap.collect import main

    assert main(["--task", "no-such-task"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'no-such-task'" in err and "bigbench:NAME" in err
    assert main(["--task", "bigbench:x", "--trajectories", "0"]) == 2
    assert "--trajectories must be at least 1" in capsys.readouterr().err


def test_inspect_prints_and_replays_a_collection(tiny_llm, tiny_task, tmp_path, capsys):
    import datasets

    from tap.collection.inspect import main, replay_trajectory

    config = CollectionConfig(task="tiny", trajectories=2, horizon=3, eval_examples=3, max_new_tokens=3)
    summary = collect(config, _cached(tiny_llm, None), tmp_path / "data", tiny_task, progress=False)
    assert main([summary["path"], "--trajectory", "1", "--chain"]) == 0
    out = capsys.readouterr().out
    assert "== trajectory 1 (3 edits) ==" in out and "replay: every stored chain reproduced exactly" in out
    assert out.count(" | reward ") == 3
    assert main([summary["path"], "--trajectory", "7"]) == 2
    assert "no trajectory 7" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "is not a collection" in capsys.readouterr().err
    # a tampered row is caught by the replay check
    rows = datasets.load_from_disk(summary["path"] + "/triples").to_list()
    traj = [r for r in rows if r["trajectory"] == 0]
    traj[1] = {**traj[1], "next_chain": Chain("tampered").to_json()}
    with pytest.raises(TapError, match="does not reproduce next_chain"):
        replay_trajectory(traj)


def test_response_summary_shape_of_answers():
    from tap.collection.datamodule import RESPONSE_FEATURES, response_summary

    assert response_summary(0.5, 0.3, 1.0, ["a", "a", "b", "c"]) == pytest.approx([0.5, 0.3, 1.0, 0.75, 0.5])
    assert response_summary(0.0, 0.1, 0.5, ["x"] * 4) == pytest.approx([0.0, 0.1, 0.5, 0.0, 1.0])  # one label
    assert response_summary(1.0, 1.0, 1.0, list("abcd")) == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.25])
    assert len(RESPONSE_FEATURES) == 5


def test_sibling_collection_pays_each_pair_once_on_the_parents_examples(tiny_task, tmp_path):
    from tests.helpers import RuleLLM

    fake = RuleLLM()
    config = CollectionConfig(task="tiny", trajectories=2, horizon=3, eval_examples=5, max_new_tokens=4, siblings=4)
    summary = collect(config, _cached(fake, None), data_dir=tmp_path / "data", task=tiny_task, progress=False)
    rows = _rows(summary)
    assert summary["triples"] == len(rows) == 2 * 3 * 4 and summary["siblings"] == 4
    groups: dict = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    assert len(groups) == 6
    val_uids = [ex.uid for ex in tiny_task.val[:5]]
    chains = set()
    for g in groups.values():
        assert [r["sibling"] for r in g] == [0, 1, 2, 3] and sum(r["chosen"] for r in g) == 1
        assert len({r["chain"] for r in g}) == 1 and len({r["parent_id"] for r in g}) == 1  # one parent
        assert len({r["next_chain"] for r in g}) == 4  # distinct children
        assert all(r["example_uids"] == val_uids for r in g)  # paired with the parent
        chains |= {g[0]["chain"], *(r["next_chain"] for r in g)}
    for t in range(2):  # the trajectory continues from the chosen sibling
        chosen = sorted((r for r in rows if r["trajectory"] == t and r["chosen"]), key=lambda r: r["step"])
        for prev, nxt in zip(chosen, chosen[1:]):
            assert prev["next_chain"] == nxt["chain"]
    # every distinct (chain, example) pair was paid exactly once: the LLM generated once per pair
    assert summary["example_evaluations"] == 5 * len(chains) == fake.generated


def test_datamodule_serves_windows_of_chosen_edits_and_sibling_groups(tmp_path, monkeypatch):
    from tap.collection.datamodule import SiblingGroups
    from tests.helpers import RuleLLM, arithmetic_task

    task = arithmetic_task(60, name="tiny-arith")
    monkeypatch.setattr("tap.collection.datamodule.TriplesDataModule.context", lambda self, t, sample=None: "")
    monkeypatch.setattr("tap.collection.datamodule.TriplesDataModule.task_pairs",
                        lambda self, t, sample=None: ["Input: 1+1\nOutput: 2"])
    dm = TriplesDataModule(tasks=["tiny-arith"], trajectories=4, horizon=3, eval_examples=4, window=2,
                           batch_size=4, siblings=3, data_dir=str(tmp_path / "data"), cache=str(tmp_path / "c.sqlite"),
                           split_fractions=(0.25, 0.25))
    dm._llm = _cached(RuleLLM(), None)
    collect(dm.configs[0], dm._llm, data_dir=tmp_path / "data", task=task, progress=False)
    dm.setup()
    assert sum(len(d) for d in dm.splits.values()) == 4 * 2  # windows of 2 over 3 chosen edits per trajectory
    assert isinstance(dm.groups["train"], SiblingGroups) and sum(len(g) for g in dm.groups.values()) == 4 * 3
    for window in dm.splits["train"].items:
        assert all(row["chosen"] for row in window)
    batch = next(iter(dm.sibling_dataloader("train", batch_size=2)))
    assert batch["group"].tolist() == [0, 0, 0, 1, 1, 1]
    assert batch["reward"].shape == (6, 2) and batch["edit_op"].shape == (6, 1)
    parents = [batch["chain_json"][i][0] for i in range(6)]
    assert parents[0] == parents[1] == parents[2] and parents[3] == parents[5]
    assert batch["task_pairs"] == [["Input: 1+1\nOutput: 2"]] * 6
    # the loaders serve windows and sibling groups together: training cycles, evaluation visits each once
    train = [b for b, *_ in dm.train_dataloader()]  # CombinedLoader yields (batch, batch_idx, loader_idx)
    assert all(b["windows"] is not None and b["siblings"] is not None for b in train)
    val = [b for b, *_ in dm.val_dataloader()]
    n_windows = sum(b["windows"] is not None for b in val)
    n_groups = sum(len(b["siblings"]["group"].unique()) for b in val if b["siblings"] is not None)
    assert n_windows == -(-len(dm.splits["val"]) // 4) and n_groups == len(dm.groups["val"])


def test_unwritable_data_dir_fails_before_any_call(tiny_task, tmp_path):
    from tests.helpers import RuleLLM

    blocker = tmp_path / "file"
    blocker.write_text("x")
    fake = RuleLLM()
    config = CollectionConfig(task="tiny", trajectories=1, horizon=1, eval_examples=3)
    with pytest.raises(TapError, match=r"cannot write to the folder .*--data-dir"):
        collect(config, _cached(fake, None), data_dir=blocker / "data", task=tiny_task, progress=False)
    assert fake.generated == 0


def test_collect_cli_unwritable_data_dir_exits_2_before_loading_a_model(tmp_path, capsys):
    from tap.collect import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--task", "ii:sentiment", "--data-dir", str(blocker / "d"), "--model", "no-such-model"]) == 2
    assert "cannot write to the folder" in capsys.readouterr().err


def test_collect_cli_with_a_data_config_collects_its_tasks_as_the_datamodule_would(tmp_path, monkeypatch, capsys):
    import yaml

    from tap.collect import main
    from tests.helpers import RuleLLM, write_arithmetic_jsonl

    rule = RuleLLM()
    monkeypatch.setattr(TriplesDataModule, "llm", property(lambda self: rule))
    tasks = [str(write_arithmetic_jsonl(tmp_path / f"add_{c}.jsonl", 40)) for c in "ab"]
    config = tmp_path / "pool.yaml"
    config.write_text(yaml.safe_dump({"class_path": "tap.collection.datamodule.TriplesDataModule",
                                      "init_args": {"tasks": tasks, "trajectories": 2, "horizon": 2,
                                                    "eval_examples": 4, "siblings": 2,
                                                    "data_dir": str(tmp_path / "data")}}))
    assert main(["--config", str(config), "--task", tasks[1]]) == 0  # one task of it
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["task"] for x in lines] == [tasks[1]] and not lines[0]["already_collected"]
    assert main(["--config", str(config)]) == 0  # the rest; the first is not paid again
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["task"], x["already_collected"]) for x in lines] == [(tasks[0], False), (tasks[1], True)]
    dm = TriplesDataModule(tasks=tasks, trajectories=2, horizon=2, eval_examples=4, siblings=2,
                           data_dir=str(tmp_path / "data"))
    dm.setup()  # the DataModule finds exactly what the CLI collected
    assert sum(len(g) for g in dm.groups.values()) == 2 * 2 * 2
    assert main(["--config", str(config), "--task", tasks[0], "--seed", "1"]) == 0  # another sample, its own folder
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert not line["already_collected"] and line["path"] != lines[0]["path"]
    again = TriplesDataModule(tasks=tasks[:1], trajectories=2, horizon=2, eval_examples=4, siblings=2,
                              data_dir=str(tmp_path / "data"), seed=1)
    assert again._dir(again.configs[0]).resolve() == Path(line["path"]).resolve()  # where a seed-1 module looks
    assert main(["--config", str(config), "--task", "ii:rhymes"]) == 2
    assert "not a task of" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2


def test_several_samples_are_collected_and_served_together_each_with_its_own_task_pairs(tmp_path, monkeypatch,
                                                                                       capsys):
    import yaml

    from tap.collect import main
    from tests.helpers import RuleLLM, write_arithmetic_jsonl

    rule = RuleLLM()
    monkeypatch.setattr(TriplesDataModule, "llm", property(lambda self: rule))
    task = str(write_arithmetic_jsonl(tmp_path / "add.jsonl", 40))
    settings = {"tasks": [task], "trajectories": 2, "horizon": 2, "eval_examples": 4, "siblings": 2,
                "data_dir": str(tmp_path / "data"), "split_fractions": [0.0, 1.0]}
    config = tmp_path / "transfer.yaml"
    config.write_text(yaml.safe_dump({"init_args": {**settings, "samples": [0, 1]}}))
    assert main(["--config", str(config), "--seed", "1"]) == 0  # one sample of it, on its own
    assert [json.loads(x)["sample"] for x in capsys.readouterr().out.splitlines()] == [1]
    assert main(["--config", str(config)]) == 0  # every sample it serves; sample 1 is not paid again
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["sample"], x["already_collected"]) for x in lines] == [(0, False), (1, True)]
    assert lines[0]["path"] != lines[1]["path"]
    one = [TriplesDataModule(**settings, seed=s) for s in (0, 1)]
    both = TriplesDataModule(**settings, samples=[0, 1])
    for dm in (*one, both):
        dm.setup()
    assert len(both.groups["test"]) == len(one[0].groups["test"]) + len(one[1].groups["test"]) == 2 * 2 * 2
    # each sample's groups carry that sample's task pairs: what a model sees of the task where it was collected
    pairs = [g[0]["task_pairs"] for g in both.groups["test"].items]
    assert pairs == [g[0]["task_pairs"] for dm in one for g in dm.groups["test"].items]
    assert one[0].task_pairs(task) != one[1].task_pairs(task)
    assert [g[0]["sample"] for g in both.groups["test"].items] == [0] * 4 + [1] * 4  # each row names its sample
    assert TriplesDataModule(**settings).samples == [0]  # default: the seed's own sample, as before
    with pytest.raises(TapError, match="samples must name"):
        TriplesDataModule(**settings, samples=[])
    missing = TriplesDataModule(**settings, samples=[0, 5])
    with pytest.raises(TapError, match=r"sample 5.*--seed 5"):
        missing.setup()
