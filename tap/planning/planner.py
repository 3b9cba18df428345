"""The planner: optimise a task's chain under a budget of real LLM calls and/or chain evaluations.

``Planner.optimize`` runs TaP's search (``tap.planning.halving``) with a preset (``tap.planning.presets``):
a large menu of candidate edits scored in imagination, acquisition by score + uncertainty, successive halving
on paired examples, and acceptance only of a chain that beats the incumbent on the same examples. The
held-out test split is touched only after the search, to report the initial and final chains' accuracy, and
is never charged to the budget. The search reads its budget only to stop, so a run with budget B is exactly
the first B calls of a run with a larger budget (``SearchResult.best_at``).

    from tap.planning import Planner
    planner = Planner.from_checkpoint("checkpoints/world_model")
    result = planner.optimize("ii:first_word_letter", budget_calls=512, seed=0)   # the default preset
    print(result.final_chain.describe(), result.test, result.costs)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from tap.chains.chain import Chain
from tap.chains.induce import Induction
from tap.env import Environment, check_budgets
from tap.errors import TapError
from tap.llm.base import GenerationSettings
from tap.paths import ensure_writable
from tap.planning.halving import SuccessiveHalvingSearch
from tap.planning.presets import METHOD_NAMES, PRESETS, resolve
from tap.search import SearchResult
from tap.systems.checkpoints import init_hparams, read_checkpoint
from tap.tasks import Task, load_task


@dataclass
class PlanConfig:
    """How a search runs (every field is a ``plan.py`` option).

    Args:
        preset: ``default`` | ``model`` | ``random`` | ``readable`` (``tap.planning.presets``).
        settings: search settings on top of the preset, by name (``{"hedge": False}`` or ``["hedge=false"]``).
        eval_examples: val examples each chain is evaluated on at the top rung (the search signal).
        test_examples: held-out test examples for the final report (0: skip the test evaluation).
        max_new_tokens: generation length in generate mode.
        mode: ``auto`` | ``generate`` | ``score`` (see ``tap.env``).
    """

    preset: str = "default"
    settings: dict | list = field(default_factory=dict)
    eval_examples: int = 16
    test_examples: int = 50
    max_new_tokens: int = 24
    mode: str = "auto"

    def resolved(self, preset: str | None = None) -> dict:
        """Every search setting of ``preset`` (default: this config's) with ``settings`` on top, checked."""
        return resolve(preset or self.preset, self.settings)

    def check(self) -> None:
        if self.eval_examples < 1 or self.test_examples < 0:
            raise TapError(f"invalid plan settings: eval_examples ({self.eval_examples}) must be >= 1, "
                           f"test_examples ({self.test_examples}) >= 0.")
        self.resolved()


class Planner:
    """Optimises chains with a trained world model (and, optionally, an imagination policy).

    Build one with ``Planner.from_checkpoint(path)``, or ``Planner(None, config=PlanConfig(preset="random"))``
    for the uniform search, which needs no world model; run ``optimize(task, budget_calls=...)``.
    """

    def __init__(self, world_model, policy=None, config: PlanConfig | None = None, llm=None,
                 training_data: dict | None = None, checkpoint: str = "", model: str | None = None,
                 cache: str = "default") -> None:
        self.wm = world_model
        self.policy = policy
        self.config = config or PlanConfig()
        self.config.check()
        self._require_models(self.config.resolved())
        self._llm = llm
        self.training_data = training_data or {}
        if model is not None and world_model is not None:
            check_frozen_model(model, self.training_data.get("model"), checkpoint)
        self.model = model or self.training_data.get("model", "smollm2")  # the LLM the world model learnt
        self.cache = cache
        self.checkpoint = checkpoint

    def _require_models(self, settings: dict) -> None:
        ranker = settings["ranker"]
        if self.wm is None and ranker != "random":
            raise TapError(f"the {ranker!r} ranker needs a world model: load a checkpoint with "
                           "Planner.from_checkpoint (plan.py --checkpoint), or use the 'random' preset.")
        if ranker == "policy" and self.policy is None:
            raise TapError("the 'policy' ranker needs an imagination-policy checkpoint: train one with "
                           "`python train.py fit --config configs/policy.yaml` and pass checkpoints/policy.")

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, llm=None, config: PlanConfig | None = None,
                        model: str | None = None, cache: str = "default") -> Planner:
        """Load a ``WorldModel`` or ``ImaginationPolicy`` checkpoint (file or run folder; None: the world model that
        ships for ``model``, SmolLM2 by default).

        The frozen LLM is ``llm`` if given, else ``model`` (default: the one the world model was trained
        against) behind the call cache ``cache``. A ``model`` other than the one the world model was trained
        against is refused (``check_frozen_model``).
        """
        if path is None:
            from tap.systems.checkpoints import shipped_world_model

            path = shipped_world_model(model or "smollm2")
        from tap.systems.imagination import ImaginationPolicy
        from tap.systems.world_model import WorldModel

        file, ckpt = read_checkpoint(path, (WorldModel.__name__, ImaginationPolicy.__name__))
        if ckpt["tap_system"] == WorldModel.__name__:
            policy, wm = None, WorldModel._build(ckpt)
            data = ckpt.get("datamodule_hyper_parameters") or {}
        else:
            policy = ImaginationPolicy._build(ckpt)
            wm = policy.world_model
            data = init_hparams(ckpt).get("world_model_data") or {}
        wm.requires_grad_(False)
        wm.eval()
        if policy is not None:
            policy.requires_grad_(False)
            policy.eval()
        data = {k: v for k, v in data.items() if not k.startswith("_")}
        return cls(wm, policy, config, llm, data, str(file), model, cache)

    @property
    def llm(self):
        """The frozen LLM the world model was trained against (behind the call cache), built on first use."""
        if self._llm is None:
            from tap.llm import load_llm

            self._llm = load_llm(self.model, cache=self.cache)
        return self._llm

    def optimize(self, task: str | Task, budget: int | None = None, seed: int = 0, initial: Chain | None = None,
                 progress: bool = True, out_dir: str | Path | None = None, budget_calls: int | None = None,
                 induction: Induction | None = None, preset: str | None = None) -> SearchResult:
        """Search for a better chain of ``task`` with at most ``budget_calls`` LLM calls (example evaluations)
        and/or ``budget`` real chain evaluations.

        Args:
            task: a task spec (``bigbench:NAME``, ``ii:NAME``, a JSONL/CSV path) or a loaded ``Task``.
            budget: real chain evaluations on train/val examples the search may spend (the initial
                chain's evaluation included); test evaluations are reported apart and never charged.
            budget_calls: LLM calls (example evaluations) the search may spend (None: no such limit).
            seed: seeds the task split (for a spec) and the search.
            initial: the starting chain (default: the task's own instruction).
            progress: show a progress bar over the budget.
            out_dir: if set, write the result there (``SearchResult.save``).
            induction: instructions induced for the task (``tap.chains.induce``), added to the edit space;
                what inducing them cost is reported in ``costs["induction"]`` (never charged to the budget).
            preset: overrides ``config.preset`` for this run.
        """
        cfg = self.config
        preset = preset or cfg.preset
        settings = cfg.resolved(preset)
        self._require_models(settings)
        check_budgets(budget, budget_calls)
        if out_dir is not None:
            ensure_writable(out_dir, "--out")  # before the first paid call
        task = task if isinstance(task, Task) else load_task(task, seed=seed)
        search = SuccessiveHalvingSearch(self.llm, task, budget, seed, budget_calls=budget_calls,
                                         eval_examples=cfg.eval_examples, mode=cfg.mode,
                                         max_new_tokens=cfg.max_new_tokens, initial=initial, induction=induction,
                                         progress=progress, world_model=self.wm, policy=self.policy,
                                         training_data=self.training_data, **settings)
        if settings["ranker"] == PRESETS[preset]["ranker"]:  # the preset's name, unless its ranker was replaced
            search.name = METHOD_NAMES[preset]
        result = search.run()
        result.test, result.costs["test"] = self._test(task, result.initial_chain, result.final_chain, search.env.mode)
        result.config = {**asdict(cfg), **result.config, "preset": preset, "settings": settings}
        result.checkpoint = self.checkpoint
        if out_dir is not None:
            result.save(out_dir)
        return result

    def _test(self, task: Task, initial: Chain, final: Chain, mode: str) -> tuple[dict, dict]:
        """The initial and final chains' accuracy on the held-out test split (never charged), and its spend;
        a final chain equal to the initial one is scored once.
        """
        cfg = self.config
        spend = {"chain_evals": 0, "llm_calls": 0, "cache_hits": 0}
        if cfg.test_examples <= 0 or not task.test:
            return {}, spend
        env = Environment(self.llm, task, mode=mode, dense_reward=False,  # type: ignore[arg-type]
                          generation=GenerationSettings(max_new_tokens=cfg.max_new_tokens))
        held_out = task.test[: cfg.test_examples]
        scored: dict[str, dict] = {}
        test = {}
        for name, chain in (("initial", initial), ("final", final)):
            key = chain.to_json()
            if key not in scored:
                t = env.evaluate(chain, held_out)
                scored[key] = {"accuracy": t.accuracy, "n": len(held_out), "compliance": t.compliance}
            test[name] = dict(scored[key])
        paid = env.spend
        return test, {"chain_evals": paid.chain_evals["test"], "llm_calls": paid.llm_calls["test"],
                      "cache_hits": paid.cache_hits["test"], "distinct_chains": len(scored)}


def check_frozen_model(model: str, trained: str | None, checkpoint: str = "") -> None:
    """Refuse to plan for the frozen LLM ``model`` with a world model trained on another one's answers (``trained``,
    its data config's ``model``): what it learnt about edits belongs to that model. A server's model cannot be
    identified from its name, so it is only noted.
    """
    import sys

    from tap.llm.provision import model_slug

    if not trained or model_slug(model) == model_slug(trained):
        return
    if model.startswith("openai:"):
        print(f"[tap] note: the world model {checkpoint} was trained on {trained}'s answers; make sure {model} serves "
              "the same model, or use the 'random' preset.", file=sys.stderr)
        return
    raise TapError(f"the world model {checkpoint or ''} was trained on the answers of {trained}, not {model}: what it "
                   f"learnt about edits belongs to that model. Fix: train one against {model} (`python train.py fit "
                   f"--config configs/world_model.yaml --data.init_args.model {model}`) and pass --checkpoint, or use "
                   "--preset random, which needs no world model.")


__all__ = ["PRESETS", "PlanConfig", "Planner", "check_frozen_model"]
