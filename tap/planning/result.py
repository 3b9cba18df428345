"""What a planning run returns and writes: the chains, every verified edit, and what it all cost."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tap.chains.chain import Chain
from tap.chains.edits import Edit, replay
from tap.chains.render import plain_prompt, render_messages
from tap.paths import write_atomic


@dataclass
class StepRecord:
    """One real verification: the edit tried on the current chain, what the world model predicted and
    what the LLM measured, and the budget spent once it was paid.
    """

    step: int  # planning step (MPC iteration)
    edit: dict  # Edit.to_dict()
    predicted: float  # world model's reward after the edit
    uncertainty: float  # reward ensemble spread after the edit
    measured: float  # accuracy on the search examples
    dense: float  # gold-answer probability on the search examples
    chain_evals: float  # budget spent so far (this verification included)
    llm_calls: int  # LLM requests of the search so far (paid and cached)
    accepted: bool = False  # the search moved to this chain
    example_evals: int = 0  # LLM calls charged to the budget so far (example evaluations)

    def line(self) -> str:
        edit = Edit.from_dict(self.edit).describe()
        mark = "accepted" if self.accepted else "rejected"
        return (f"step {self.step:>3}  {edit[:70]:<70}  predicted {self.predicted:.3f} ± {self.uncertainty:.3f}  "
                f"measured {self.measured:.3f} (dense {self.dense:.3f})  evals {self.chain_evals:g}  "
                f"calls {self.example_evals}  {mark}")


@dataclass
class PlanResult:
    """A planning run: initial and final chain, every verification, the accepted edits and the costs.

    ``replay(initial_chain, edits) == final_chain`` always holds (``check_replay``).
    """

    task: str
    method: str
    seed: int
    budget: int
    initial_chain: Chain
    final_chain: Chain
    initial_search: dict  # accuracy, dense on the search examples
    final_search: dict
    records: list[StepRecord]
    edits: list[dict]  # the accepted edits, in order
    costs: dict
    test: dict = field(default_factory=dict)  # {"initial": {...}, "final": {...}} on the held-out test split
    config: dict = field(default_factory=dict)
    checkpoint: str = ""

    def check_replay(self) -> Chain:
        chain = replay(self.initial_chain, self.edits)
        if chain != self.final_chain:
            raise AssertionError("the accepted edits do not replay to the final chain")
        return chain

    def best_at(self, evals: float | None = None, calls: int | None = None) -> tuple[Chain, list[dict], float]:
        """The chain the search held after ``evals`` chain evaluations and/or ``calls`` LLM calls (the search
        is budget-agnostic, so this is exactly what a run with that budget returns), its edits and its
        search accuracy.
        """
        held = [r for r in self.records if r.accepted and (evals is None or r.chain_evals <= evals + 1e-9)
                and (calls is None or r.example_evals <= calls)]
        edits = [r.edit for r in held]
        return replay(self.initial_chain, edits), edits, held[-1].measured if held else self.initial_search["accuracy"]

    def prompt_text(self, chain: Chain | None = None) -> str:
        """The chain as plain prompt text, with ``{question}`` where each question goes."""
        return plain_prompt(render_messages(chain or self.final_chain, "{question}"))

    def calls_at(self, evals: float) -> int:
        """LLM calls (example evaluations) the search had spent once ``evals`` chain evaluations were spent."""
        initial = self.costs["search"].get("examples_per_eval", 0)  # the initial chain's evaluation, not a record
        return max((r.example_evals for r in self.records if r.chain_evals <= evals + 1e-9), default=initial)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "method": self.method, "seed": self.seed, "budget": self.budget,
                "checkpoint": self.checkpoint, "config": self.config,
                "initial_chain": self.initial_chain.to_dict(), "final_chain": self.final_chain.to_dict(),
                "initial_search": self.initial_search, "final_search": self.final_search,
                "test": self.test, "costs": self.costs, "edits": self.edits,
                "records": [asdict(r) for r in self.records]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanResult:
        return cls(data["task"], data["method"], data["seed"], data["budget"], Chain.from_dict(data["initial_chain"]),
                   Chain.from_dict(data["final_chain"]), data["initial_search"], data["final_search"],
                   [StepRecord(**r) for r in data["records"]], data["edits"], data["costs"], data.get("test", {}),
                   data.get("config", {}), data.get("checkpoint", ""))

    @classmethod
    def load(cls, path: str | Path) -> PlanResult:
        path = Path(path)
        return cls.from_dict(json.loads((path / "plan.json" if path.is_dir() else path).read_text()))

    def to_markdown(self) -> str:
        t = self.test
        lines = [f"# TaP plan: {self.task}", "",
                 f"method `{self.method}`, seed {self.seed}, budget {self.budget} chain evaluations, "
                 f"checkpoint `{self.checkpoint}`", "",
                 "| | search accuracy | search dense | test accuracy |", "|---|---|---|---|"]
        for name in ("initial", "final"):
            s = getattr(self, f"{name}_search")
            acc = f"{t[name]['accuracy']:.3f} (n={t[name]['n']})" if name in t else "-"
            lines.append(f"| {name} | {s['accuracy']:.3f} | {s['dense']:.3f} | {acc} |")
        lines += ["", "## Verified edits", "", "| step | edit | predicted | uncertainty | measured | dense | "
                  "evals | LLM requests | |", "|---|---|---|---|---|---|---|---|---|"]
        for r in self.records:
            edit = Edit.from_dict(r.edit).describe().replace("|", "\\|")
            lines.append(f"| {r.step} | `{edit}` | {r.predicted:.3f} | {r.uncertainty:.3f} | {r.measured:.3f} | "
                         f"{r.dense:.3f} | {r.chain_evals} | {r.llm_calls} | {'accepted' if r.accepted else ''} |")
        lines += ["", "## Initial chain", "", "```", self.initial_chain.describe(), "```", "",
                  "## Final chain", "", "```", self.final_chain.describe(), "```", "",
                  "## Costs", "", "```json", json.dumps(self.costs, indent=1), "```", ""]
        return "\n".join(lines)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``plan.json``, ``plan.md``, ``final_chain.json`` (loadable by ``Chain.from_json``) and
        ``final_prompt.txt``, each atomically. Returns the paths.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"plan.json": json.dumps(self.to_dict(), indent=1, ensure_ascii=False),
                 "plan.md": self.to_markdown(),
                 "final_chain.json": json.dumps(self.final_chain.to_dict(), indent=1, ensure_ascii=False),
                 "final_prompt.txt": self.prompt_text()}
        paths = {}
        for name, text in files.items():
            paths[name] = write_atomic(out / name, text)
        return paths
