"""The README's own-task commands and its Python API example, run as written on a tiny task file, a tiny world
model and the rule-based fake LLM (the real model's run is the quickstart); and the README's shape."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import RuleLLM, save_tiny_world_model, write_arithmetic_jsonl

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def _commands(block: str) -> list[list[str]]:
    """The block's commands (continuation lines joined, comments dropped), each as argv."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line.split(" #")[0]) for line in joined.splitlines() if line.strip()]


@pytest.fixture
def own_task(tmp_path, monkeypatch):
    """The README's names made real in a scratch folder: my_task.jsonl, and a tiny stand-in for the shipped world
    model (the real one reads MiniLM, which the slow tests load)."""
    monkeypatch.chdir(tmp_path)
    write_arithmetic_jsonl(tmp_path / "my_task.jsonl", 80)
    tiny = save_tiny_world_model(tmp_path / "tiny.ckpt", tasks=["other.jsonl"])
    monkeypatch.setattr("tap.systems.checkpoints.shipped_world_model", lambda model="smollm2": tiny)  # MiniLM-free
    monkeypatch.setattr("tap.llm.load_llm", lambda *a, **k: RuleLLM())
    return tmp_path


def test_the_readme_is_a_users_guide():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250
    first = "\n".join(lines[:60])
    assert "## Your own task, your own model" in first and "--model openai:" in first
    assert "pip install torch==2.13.0 -e . && python -m tap.pipeline" in first
    assert "pip install torch==2.13.0 -e '.[dev]' && python -m pytest" in first


def test_the_own_task_commands_run_as_written(own_task, capsys):
    from tap.planning import cli as plan_cli
    from tap.tasks.__main__ import main as tasks_main

    block = next(b for b in _blocks("bash") if "my_task.jsonl" in b)
    commands = _commands(block)
    assert len(commands) == 4
    for argv in commands:
        if argv[:3] == ["python", "-m", "tap.tasks"]:
            assert tasks_main(argv[3:]) in (0, None)
            continue
        assert argv[:2] == ["python", "plan.py"], argv
        # the README's budget, on an 8-example top rung and a small menu, so that it runs in seconds
        args = [*argv[2:], "--eval-examples", "8", "--test-examples", "6", "--set", "menu=16", "--quiet"]
        assert plan_cli.main(args) == 0, capsys.readouterr().err
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["example_evals"] <= 256 and set(summary["test"]) == {"initial", "final"}
        assert (own_task / summary["out"] / "final_prompt.txt").exists()


def test_the_python_api_example_runs_as_written(own_task, monkeypatch, capsys):
    from tap.planning import Planner

    monkeypatch.setattr(Planner, "llm", property(lambda self: RuleLLM()))
    code = _blocks("python")[0]
    assert "Planner.from_checkpoint(config=" in code  # the shipped world model
    # the README's search, on an 8-example top rung and a small menu
    code = code.replace('PlanConfig(preset="default", test_examples=100)',
                        'PlanConfig(preset="default", test_examples=6, eval_examples=8, settings={"menu": 16}), '
                        'llm=RuleLLM()')
    exec(compile(code, str(README), "exec"), {"RuleLLM": RuleLLM})
    out = capsys.readouterr().out
    assert "instruction" in out and "{question}" in out and "'initial'" in out


def test_the_readme_server_commands_are_the_ones_tests_run():
    """The README's two server commands: the first is docs/server.md's, which tests/llm/test_server.py starts and
    serves TaP from; the second is a plan.py command line that parses, pointed at what that server prints."""
    from tap.planning import cli as plan_cli

    block = next(b for b in _blocks("bash") if "tap.llm.server" in b)
    start, plan = _commands(block)
    doc = (README.parent / "docs" / "server.md").read_text()
    served = " ".join(start[start.index("python"):])
    assert any(line.split("#")[0].strip() == served for line in doc.splitlines()), served
    spec = plan[plan.index("--model") + 1]
    assert spec in doc and spec.startswith("openai:SmolLM2-135M-Instruct@http://127.0.0.1:8000")
    args = plan_cli.parse_args(plan[2:])
    assert args.model == spec and args.budget_calls == 256
