"""The planner: optimise a task's chain under a budget of real LLM calls and/or chain evaluations.

``Planner.optimize`` runs TaP's successive-halving search (``tap.planning.search``: a large menu scored
in imagination, acquisition by score + uncertainty, successive halving on paired examples). By default
(``method="prior-sh"``) it ranks the menu by the operation prior the world model learnt on its training
tasks (each edit operation's mean accuracy change there): on tasks never trained on, that ranks ahead of
the world model's own predictions (``sh``) at 128 and 256 LLM calls (``benchmarks/README.md``, 10 seeds
on the transfer set), so the network is not the default ranker until it earns it. ``sh``, ``random-sh``,
``gradient-sh`` and ``policy-sh`` are the same search ranked by the world model, uniformly, by the
gradient planner or by an imagination policy. The older verify-top-k loop below stays available as
``gradient``, ``policy`` and ``random``:

Each step (MPC): propose K candidate edits of the current chain across the three scales; rank them
in imagination (``gradient``: relaxed H-step plans through the world model, seeded by the imagination
policy when there is one; ``policy``: the imagination policy's scores; ``random``: a seeded shuffle,
the baseline); verify the top ``verify_top`` on the real LLM (train/val examples only, each one chain
evaluation of the budget); move to the best verified chain if it beats the current one; feed the
verified transitions back to the world model (Dyna); plan again. The held-out test split is touched
only after the search, to report the initial and final chains' accuracy, and is never charged to the
budget. The search never looks at its budget except to stop, so a run with budget B is exactly the
first B evaluations of a run with a larger budget (``SearchResult.best_at``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch

from tap.chains.chain import Chain
from tap.chains.edits import Edit, apply_edit
from tap.chains.induce import Induction
from tap.collection.schema import task_pair_texts
from tap.env import Environment, check_budgets
from tap.errors import TapError
from tap.llm.base import GenerationSettings
from tap.paths import ensure_writable
from tap.planning.gradient import GradientConfig, GradientPlanner
from tap.planning.refine import OnlineRefiner, transition_row
from tap.planning.search import HEDGE_ON
from tap.search import Search, SearchRecord, SearchResult
from tap.systems.checkpoints import init_hparams, read_checkpoint
from tap.tasks import Task, load_task

Method = Literal["sh", "prior-sh", "random-sh", "gradient-sh", "policy-sh", "gradient", "policy", "random"]
#: the successive-halving search (``tap.planning.search``) and what ranks its menu: method -> scorer
SH_METHODS = {"sh": "model", "prior-sh": "prior", "random-sh": "random", "gradient-sh": "gradient",
              "policy-sh": "policy"}
#: the successive-halving searches whose ranker predicts an accuracy change (the world model, the operation prior):
#: the ones that compose plans from it and correct it online by default
PREDICTING = ("sh", "prior-sh")
#: the verify-top-k planner (``PlanSearch``)
TOPK_METHODS = ("gradient", "policy", "random")
METHODS = (*SH_METHODS, *TOPK_METHODS)


@dataclass
class PlanConfig:
    """How a search runs (every field is a ``plan.py`` option).

    Args:
        method: ``prior-sh`` (TaP's successive-halving search ranked by the world model's operation prior:
            the default), ``sh`` (ranked by the world model's predictions), ``random-sh``, ``gradient-sh``,
            ``policy-sh`` (ranked otherwise), or the verify-top-k planner:
            ``gradient`` (relaxed planning through the world model), ``policy`` (the imagination policy's
            choice; needs a policy checkpoint) or ``random`` (random candidates, same verification).
        candidates: verify-top-k: candidate edits proposed per step (K), across the three scales.
        verify_top: verify-top-k: planned chains verified on the real LLM per step.
        gradient: the gradient planner's settings (plan_length, steps, lr, temperature, penalty, ...).
        menu: sh: candidates scored in imagination per round.
        enter: sh: candidates verified by successive halving per round.
        beta: sh: weight of the uncertainty in the acquisition (0: by the predicted mean).
        adapt: sh: prior scale of the task's per-operation departure from the ranker, learnt online from
            every verified candidate (``tap.planning.adapt``; 0: off; ``sh`` and ``prior-sh``). None (the
            default): 0.1 for ``prior-sh`` and ``sh``, 0 for the others (``benchmarks/results/adapt/PLAN.md``).
        adapt_edit: sh: prior scale of each measured edit's own departure inside its operation, learnt online
            beside ``adapt`` (``tap.planning.adapt.EditCorrection``; 0: off, the default; needs ``adapt`` > 0).
        carry: sh: most entrants of a round that beat the incumbent on the same examples without being accepted,
            carried into the next round ahead of the acquisition (0: off; every ranker).
        hedge: sh: set each round's share of uniformly drawn entrants from the ranker's measured skill on the
            task (``tap.planning.hedge``). None (the default): on for every ranked search (``prior-sh``, ``sh``,
            ``gradient-sh``, ``policy-sh``) with ``enter`` >= 2, off for ``random-sh``, which has no ranker to
            weigh.
        hedge_window: sh: with the hedge on, weigh only the entrants of the last this many rounds (0: every
            round since the start).
        hedge_on: sh: what the hedges weigh each entrant by: ``first-rung`` (accuracy plus ``dense_weight`` x gold
            probability on the first rung) or ``reached`` (its accuracy change at the highest rung it reached;
            ``tap.planning.search``, step 6).
        compose: sh: edits per plan that the ranker composes from its best-ranked single edits (up to ``enter``
            such plans join each round's menu; 0: off; not with ``gradient-sh`` or ``policy-sh``). None (the
            default): 4 for ``prior-sh`` and ``sh``, 0 for the others (``random-sh`` draws single edits and plans
            as before, so it stays the search with the ranking replaced by a uniform choice).
        compose_hedge: sh: measure the composed plans against the ranker's other picks and set their share of
            its entrants from that (one to start with; needs ``compose`` >= 2; not with ``random-sh``). None (the
            default): on wherever plans are composed.
        early_accept: sh: level of the paired sign test that accepts an entrant below the top rung of the
            halving and ends its round (``tap.planning.search``, step 4; 0: off). None (the default): 0.05 for
            every successive-halving search, ``random-sh`` included.
        lazy_initial: sh: evaluate the initial chain on the first rung's examples only, paying the rest as the
            halving compares with it (``tap.planning.search``, step 4). None (the default): on for every
            successive-halving search, ``random-sh`` included (``benchmarks/results/lazy/PLAN.md``).
        op_bonus: sh: add the online correction's per-operation uncertainty to every candidate's, so the
            acquisition's UCB also explores operations this task has not measured (``tap.planning.search``, step
            3; needs ``adapt`` > 0). None (the default): on for ``prior-sh`` where it adapts, off for the others
            (``sh``'s world model has an uncertainty of its own; ``benchmarks/results/bonus/PLAN.md``).
        batch_bonus: sh: pick a round's ranked entrants one at a time, each counted as measured before the next,
            so that the operation bonus spreads them over operations (``tap.planning.search``, step 3; needs
            ``op_bonus``). None (the default): off (``benchmarks/results/batch/PLAN.md``).
        fluency_weight: sh: add this times the change in the frozen LLM's mean log-probability per token of the
            instruction and steps (``tap.chains.fluency``) to every candidate's score, so readable edits rank
            ahead of word salad at the same predicted gain (0, the default: off; ranked searches only: random-sh
            draws uniformly). Its scoring requests are reported apart from the budget
            (``benchmarks/results/fluent/PLAN.md``).
        fluency_top: sh: with ``fluency_weight``, score fluency only for this many candidates with the highest
            acquisition value; the rest count as the worst of them (0, the default: every candidate, about one
            real evaluation of compute a round with a 256-candidate menu).
        refine_steps: refinement steps on verified transitions after each step (0: off; None: the
            method's default, 10 for the verify-top-k planner's Dyna refinement and 0 for ``sh``, whose
            online learning is the ablation ``tap-sh-online`` in ``benchmarks/compare.py``).
        refine_lr: learning rate of the refinement.
        eval_examples: val examples each verified chain is evaluated on (the search signal).
        test_examples: held-out test examples for the final report (0: skip the test evaluation).
        max_new_tokens: generation length in generate mode.
        mode: ``auto`` | ``generate`` | ``score`` (see ``tap.env``).
        max_steps: most planning steps (the budget normally ends the search first).
    """

    method: Method = "prior-sh"
    candidates: int = 12
    verify_top: int = 2
    gradient: GradientConfig = field(default_factory=GradientConfig)
    menu: int = 256
    enter: int = 8
    beta: float = 1.0
    adapt: float | None = None
    adapt_edit: float = 0.0
    carry: int = 0
    hedge: bool | None = None
    hedge_window: int = 0
    hedge_on: str = "first-rung"
    compose: int | None = None
    compose_hedge: bool | None = None
    early_accept: float | None = None
    lazy_initial: bool | None = None
    op_bonus: bool | None = None
    batch_bonus: bool | None = None
    fluency_weight: float = 0.0
    fluency_top: int = 0
    refine_steps: int | None = None
    refine_lr: float = 1e-4
    eval_examples: int = 16
    test_examples: int = 50
    max_new_tokens: int = 24
    mode: str = "auto"
    max_steps: int = 1000

    def check(self) -> None:
        if self.method not in METHODS:
            raise TapError(f"unknown planning method {self.method!r}; choose one of {list(METHODS)}.")
        if self.candidates < 1 or self.verify_top < 1 or self.eval_examples < 1 or self.test_examples < 0:
            raise TapError(f"invalid plan settings: candidates ({self.candidates}), verify_top ({self.verify_top}) "
                           f"and eval_examples ({self.eval_examples}) must be >= 1, test_examples >= 0.")
        if self.adapt is not None and self.adapt < 0:
            raise TapError(f"adapt (the correction's prior scale) must be >= 0, got {self.adapt}.")
        if self.adapt_edit < 0 or (self.adapt_edit and not self.adapt_for(self.method)):
            raise TapError(f"adapt_edit ({self.adapt_edit}) learns each edit's departure inside the per-operation "
                           f"correction: it must be >= 0 and needs adapt > 0 ({self.method!r} runs with adapt "
                           f"{self.adapt_for(self.method):g}; sh and prior-sh adapt by default).")
        if not 0 <= self.carry < self.enter:
            raise TapError(f"carry ({self.carry}) must be in 0..enter-1 ({self.enter - 1}): carried entrants take "
                           "entry slots and one must stay for a new candidate.")
        if self.hedge and self.method not in SH_METHODS:
            raise TapError(f"hedge is a setting of the successive-halving searches ({list(SH_METHODS)}), not of "
                           f"{self.method!r}.")
        if self.hedge and self.method == "random-sh":
            raise TapError("hedge weighs a ranker against uniform draws; random-sh has no ranker. Use prior-sh or sh.")
        if self.hedge and self.enter < 2:
            raise TapError(f"hedge needs enter >= 2 (one ranked and one random entrant a round), got {self.enter}.")
        if self.hedge_window < 0 or (self.hedge_window and self.hedge is False):
            raise TapError(f"hedge_window ({self.hedge_window}) counts the rounds the hedge weighs: >= 0, and only "
                           "with the hedge on (drop --no-hedge, or use --hedge-window 0).")
        if self.hedge_on not in HEDGE_ON:
            raise TapError(f"hedge_on ({self.hedge_on!r}) is what the hedges weigh an entrant by: one of "
                           f"{list(HEDGE_ON)}.")
        if self.early_accept is not None and not 0 <= self.early_accept < 1:
            raise TapError(f"early_accept ({self.early_accept}) is the level of a sign test: in [0, 1) (0: off).")
        if self.early_accept and self.method not in SH_METHODS:
            raise TapError(f"early_accept is a setting of the successive-halving searches ({list(SH_METHODS)}), not "
                           f"of {self.method!r}.")
        if self.lazy_initial and self.method not in SH_METHODS:
            raise TapError(f"lazy_initial is a setting of the successive-halving searches ({list(SH_METHODS)}), not "
                           f"of {self.method!r}.")
        if self.op_bonus and not self.adapt_for(self.method):
            raise TapError(f"op_bonus reads the online correction's per-operation uncertainty: it needs adapt > 0, and "
                           f"{self.method!r} runs with adapt {self.adapt_for(self.method):g} (sh and prior-sh adapt "
                           "by default).")
        if self.batch_bonus and not self.op_bonus_for(self.method):
            raise TapError(f"batch_bonus picks entrants one at a time against the operation bonus: it needs op_bonus, "
                           f"which is off for {self.method!r} here (prior-sh has it by default; --op-bonus).")
        if self.fluency_weight < 0 or self.fluency_top < 0:
            raise TapError(f"fluency_weight ({self.fluency_weight}) weighs readability in the acquisition and "
                           f"fluency_top ({self.fluency_top}) counts the candidates it scores: both >= 0 (0: off / "
                           "every candidate).")
        if self.fluency_weight and (self.method not in SH_METHODS or self.method == "random-sh"):
            ranked = [m for m in SH_METHODS if m != "random-sh"]
            raise TapError(f"fluency_weight re-ranks a ranker's candidates by readability: use it with a ranked "
                           f"successive-halving search ({ranked}), not {self.method!r}.")
        compose = self.compose_for(self.method)
        if compose < 0:
            raise TapError(f"compose (edits per composed plan) must be >= 0, got {compose}.")
        if compose > 1 and self.method not in ("sh", "prior-sh", "random-sh"):
            raise TapError(f"compose is a setting of the sh, prior-sh and random-sh searches (gradient-sh and "
                           f"policy-sh rank single edits only), not of {self.method!r}; use --compose 0.")
        if self.compose_hedge and (compose < 2 or self.method not in PREDICTING):
            raise TapError(f"compose_hedge weighs the plans a ranker composes against its other picks: it needs "
                           f"compose >= 2 (got {compose}) and a ranked search, sh or prior-sh (got "
                           f"{self.method!r}).")

    def hedge_for(self, method: str) -> bool:
        """Whether a run of ``method`` hedges its ranker (``hedge``, or on for every ranked search)."""
        if self.hedge is not None:
            return self.hedge
        return method in SH_METHODS and method != "random-sh" and self.enter >= 2  # one ranked, one random

    def compose_for(self, method: str) -> int:
        """Edits per composed plan in a run of ``method`` (``compose``, or 4 for the ranked searches that compose:
        ``prior-sh`` and ``sh``; ``benchmarks/results/race/PLAN.md`` says why).
        """
        if self.compose is not None:
            return self.compose
        return 4 if method in PREDICTING and self.enter >= 3 else 0

    def compose_hedge_for(self, method: str) -> bool:
        """Whether a run of ``method`` weighs its composed plans against its other picks (``compose_hedge``, or on
        wherever a ranked search composes).
        """
        if self.compose_hedge is not None:
            return self.compose_hedge
        return self.compose_for(method) >= 2 and method in PREDICTING and self.enter >= 3

    def adapt_for(self, method: str) -> float:
        """The online correction's prior scale in a run of ``method`` (``adapt``, or 0.1 for the ranked searches
        whose ranker predicts an accuracy change: ``prior-sh`` and ``sh``; ``benchmarks/results/adapt/PLAN.md``).
        """
        if self.adapt is not None:
            return self.adapt
        return 0.1 if method in PREDICTING else 0.0

    def early_accept_for(self, method: str) -> float:
        """The race's level in a run of ``method`` (``early_accept``, or 0.05 for every successive-halving search)."""
        if self.early_accept is not None:
            return self.early_accept
        return 0.05 if method in SH_METHODS else 0.0

    def lazy_initial_for(self, method: str) -> bool:
        """Whether a run of ``method`` pays the initial chain only on the rungs it is compared on (``lazy_initial``,
        or on for every successive-halving search).
        """
        if self.lazy_initial is not None:
            return self.lazy_initial
        return method in SH_METHODS

    def op_bonus_for(self, method: str) -> bool:
        """Whether a run of ``method`` adds the correction's per-operation uncertainty to the acquisition
        (``op_bonus``, or on for ``prior-sh`` wherever it corrects the prior online).
        """
        if self.op_bonus is not None:
            return self.op_bonus
        return method == "prior-sh" and self.adapt_for(method) > 0

    def batch_bonus_for(self, method: str) -> bool:
        """Whether a run of ``method`` picks its ranked entrants one at a time against the operation bonus
        (``batch_bonus``; off by default).
        """
        return bool(self.batch_bonus)

    def refine_for(self, method: str) -> int:
        """Refinement steps a run of ``method`` takes (``refine_steps``, or the method's default)."""
        if self.refine_steps is not None:
            return self.refine_steps
        return 0 if method in SH_METHODS else 10


class Planner:
    """Plans chain edits with a trained world model (and, optionally, an imagination policy).

    Build one with ``Planner.from_checkpoint(path)``; run ``optimize(task, budget=...)``.
    """

    def __init__(self, world_model, policy=None, config: PlanConfig | None = None, llm=None,
                 training_data: dict | None = None, checkpoint: str = "", model: str | None = None,
                 cache: str = "default") -> None:
        self.wm = world_model
        self.policy = policy
        self.config = config or PlanConfig()
        self.config.check()
        if world_model is None and self.config.method != "random-sh":
            raise TapError(f"method {self.config.method!r} needs a world model: load a checkpoint with "
                           "Planner.from_checkpoint, or use method='random-sh'.")
        if self.config.method == "policy" and policy is None:
            raise TapError("method 'policy' needs an imagination-policy checkpoint: train one with "
                           "`python train.py fit --config configs/policy.yaml` and pass checkpoints/policy.")
        self._llm = llm
        self.model = model or (training_data or {}).get("model", "smollm2")  # the LLM the world model learnt
        self.cache = cache
        self.training_data = training_data or {}
        self.checkpoint = checkpoint
        # what Dyna refinement changes (the frozen encoder is never touched, so it is not copied)
        self._initial_state = {name: {k: v.clone() for k, v in getattr(world_model, name).state_dict().items()}
                               for name in ("net", "actions")} if world_model is not None else {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, llm=None, config: PlanConfig | None = None, model: str | None = None,
                        cache: str = "default", **overrides) -> Planner:
        """Load a ``WorldModel`` or ``ImaginationPolicy`` checkpoint (file or run folder).

        The frozen LLM is ``llm`` if given, else ``model`` (default: the one the world model was trained
        against) behind the call cache ``cache``. ``overrides`` set ``PlanConfig`` fields (e.g.
        ``method="random"``, ``candidates=8``).
        """
        from tap.systems.policy import ImaginationPolicy
        from tap.systems.world_model import WorldModel

        config = config or PlanConfig()
        for k, v in overrides.items():
            if not hasattr(config, k):
                raise TapError(f"unknown planner setting {k!r}; known: {sorted(asdict(config))}.")
            setattr(config, k, v)
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

    # ---- ranking candidates in imagination ------------------------------------------------
    @torch.no_grad()
    def _imagine_one(self, chain: Chain, context: tuple[str, list[str]], edits: list[Edit]):
        wm = self.wm
        state = wm.observe(wm.encode_chains([chain], *context))  # batch 1
        actions, scales = wm.embed_edits(edits)  # (K, A), (K, 3)
        after = wm.imagine({k: v.expand(len(edits), *v.shape[1:]) for k, v in state.items()},
                           actions.unsqueeze(1), scales.unsqueeze(1))[0]
        return state, actions, scales, wm.reward(after), wm.uncertainty(after)

    def _rank(self, method: str, chain: Chain, context: tuple[str, list[str]], edits: list[Edit], rng: random.Random,
              gen: torch.Generator) -> tuple[list[int], list[float], list[float]]:
        """Candidate order (best first), predicted reward and uncertainty after each candidate. ``context``:
        the task's description and its train pairs (what the world model conditions on).
        """
        state, actions, scales, reward, unc = self._imagine_one(chain, context, edits)
        prior = None
        if self.policy is not None and method in ("gradient", "policy"):
            with torch.no_grad():
                prior = self.policy.actor_logits(self.wm.features(state), actions.unsqueeze(0))[0]  # (K,)
        if method == "random":
            order = list(range(len(edits)))
            rng.shuffle(order)
        elif method == "policy":
            order = sorted(range(len(edits)), key=lambda i: -float(prior[i]))  # type: ignore[index]
        else:
            scores = GradientPlanner(self.wm, self.config.gradient).plan(state, actions, scales, prior, gen)
            order = sorted(range(len(edits)), key=lambda i: -float(scores.returns[i]))
        return order, reward.tolist(), unc.tolist()

    # ---- the search -------------------------------------------------------------------------
    def optimize(self, task: str | Task, budget: int | None = None, seed: int = 0, initial: Chain | None = None,
                 progress: bool = True, out_dir: str | Path | None = None, log_dir: str | Path | None = None,
                 method: Method | None = None, on_record: Callable[[SearchRecord], None] | None = None,
                 budget_calls: int | None = None, induction: Induction | None = None) -> SearchResult:
        """Search for a better chain of ``task`` with at most ``budget`` real chain evaluations and/or
        ``budget_calls`` LLM calls (example evaluations).

        Args:
            task: a task spec (``bigbench:NAME``, ``ii:NAME``, a JSONL/CSV path) or a loaded ``Task``.
            budget: real chain evaluations on train/val examples the search may spend (the initial
                chain's evaluation included); test evaluations are reported apart and never charged.
            budget_calls: LLM calls (example evaluations) the search may spend (None: no such limit).
            seed: seeds the task split, the candidates, the planner and the refinement.
            initial: the starting chain (default: the task's own instruction).
            progress: show a progress bar over the budget.
            out_dir: if set, write the result there (``SearchResult.save``, plus the verified transitions).
            log_dir: if set, log the run to TensorBoard there (the verify-top-k planner).
            method: overrides ``config.method`` for this run.
            on_record: called with each verification as soon as it is measured (the verify-top-k planner;
                ``plan.py`` prints it).
            induction: instructions induced for the task (``tap.chains.induce``), added to the edit space;
                what inducing them cost is reported in ``costs["induction"]`` (never charged to the budget).
        """
        cfg = self.config
        method = method or cfg.method
        if method not in METHODS:
            raise TapError(f"unknown planning method {method!r}; choose one of {list(METHODS)}.")
        if method in ("policy", "policy-sh") and self.policy is None:
            raise TapError(f"method {method!r} needs an imagination-policy checkpoint (configs/policy.yaml).")
        if self.wm is None and method != "random-sh":
            raise TapError(f"method {method!r} needs a world model: load a checkpoint with Planner.from_checkpoint.")
        if cfg.adapt_for(method) and method not in PREDICTING:
            raise TapError(f"adapt corrects a ranker's predicted change online: it applies to methods 'sh' and "
                           f"'prior-sh', not {method!r}. Drop --adapt, or choose one of those methods.")
        check_budgets(budget, budget_calls)
        if out_dir is not None:
            ensure_writable(out_dir, "--out")  # before the first paid call
        task = task if isinstance(task, Task) else load_task(task, seed=seed)
        for name, state in self._initial_state.items():  # every run starts from the checkpoint's world model
            getattr(self.wm, name).load_state_dict(state)
        if method in SH_METHODS:
            return self._successive_halving(task, method, budget, budget_calls, seed, initial, progress, out_dir,
                                            induction)
        search = PlanSearch(self, method, self.llm, task, budget, seed=seed, eval_examples=cfg.eval_examples,
                            mode=cfg.mode, max_new_tokens=cfg.max_new_tokens, initial=initial, progress=progress,
                            budget_calls=budget_calls, induction=induction, on_record=on_record)
        result = search.run()
        result.test, result.costs["test"] = self._test(task, result.initial_chain, result.final_chain, search.env.mode)
        result.costs["collection"] = collection_cost(self.training_data, task, search.env.mode)
        result.costs["refinement"] = {"steps": cfg.refine_for(method) * len(search.refine_log),
                                      "verified_transitions": len(search.refiner.rows)}
        result.config, result.checkpoint = {**asdict(cfg), "method": method}, self.checkpoint
        if out_dir is not None:
            result.save(out_dir)
            search.refiner.save(Path(out_dir) / "verified")
        if log_dir is not None:
            from tap.planning.report import log_to_tensorboard

            log_to_tensorboard(result, log_dir, search.refine_log)
        return result

    def _successive_halving(self, task: Task, method: str, budget: int | None, budget_calls: int | None, seed: int,
                            initial: Chain | None, progress: bool, out_dir: str | Path | None,
                            induction: Induction | None) -> SearchResult:
        """``optimize`` with TaP's successive-halving search (``tap.planning.search``), ranked per ``method``."""
        from tap.planning.search import SuccessiveHalvingSearch

        cfg, scorer = self.config, SH_METHODS[method]
        search = SuccessiveHalvingSearch(self.llm, task, budget, seed, budget_calls=budget_calls,
                                         eval_examples=cfg.eval_examples, mode=cfg.mode,
                                         max_new_tokens=cfg.max_new_tokens, initial=initial, induction=induction,
                                         progress=progress, world_model=self.wm, scorer=scorer, policy=self.policy,
                                         training_data=self.training_data, menu=cfg.menu, enter=cfg.enter,
                                         beta=cfg.beta, refine_steps=cfg.refine_for(method) if scorer == "model" else 0,
                                         refine_lr=cfg.refine_lr, adapt=cfg.adapt_for(method),
                                         adapt_edit=cfg.adapt_edit, carry=cfg.carry,
                                         hedge=cfg.hedge_for(method), compose=cfg.compose_for(method),
                                         hedge_window=cfg.hedge_window, hedge_on=cfg.hedge_on,
                                         early_accept=cfg.early_accept_for(method),
                                         lazy_initial=cfg.lazy_initial_for(method), op_bonus=cfg.op_bonus_for(method),
                                         batch_bonus=cfg.batch_bonus_for(method),
                                         fluency_weight=cfg.fluency_weight, fluency_top=cfg.fluency_top,
                                         compose_hedge=cfg.compose_hedge_for(method))
        result = search.run()
        result.test, result.costs["test"] = self._test(task, result.initial_chain, result.final_chain, search.env.mode)
        result.config = {**asdict(cfg), **result.config, "method": method}
        result.checkpoint = self.checkpoint
        if out_dir is not None:
            result.save(out_dir)
        return result

    def _test(self, task: Task, initial: Chain, final: Chain, mode: str) -> tuple[dict, dict]:
        """The initial and final chains' accuracy on the held-out test split (never charged), and its spend."""
        cfg = self.config
        spend = {"chain_evals": 0, "llm_calls": 0, "cache_hits": 0}
        if cfg.test_examples <= 0 or not task.test:
            return {}, spend
        env = Environment(self.llm, task, mode=mode, dense_reward=False,  # type: ignore[arg-type]
                          generation=GenerationSettings(max_new_tokens=cfg.max_new_tokens))
        held_out = task.test[: cfg.test_examples]
        test = {}
        for name, chain in (("initial", initial), ("final", final)):
            t = env.evaluate(chain, held_out)
            test[name] = {"accuracy": t.accuracy, "n": len(held_out), "compliance": t.compliance}
        paid = env.spend
        return test, {"chain_evals": paid.chain_evals["test"], "llm_calls": paid.llm_calls["test"],
                      "cache_hits": paid.cache_hits["test"]}


class PlanSearch(Search):
    """The planner's loop as a ``Search`` (one base, one result type, one budget holder with the baselines).

    Each step: ``candidates`` edits proposed from the incumbent, ranked by the planner (``Planner._rank``),
    the top ``verify_top`` not evaluated before verified at full fidelity; the best replaces the incumbent
    if it beats it; the verified transitions refine the world model (Dyna) before the next step.
    """

    def __init__(self, planner: Planner, method: str, *args,
                 on_record: Callable[[SearchRecord], None] | None = None, **kwargs) -> None:
        self.name = method  # type: ignore[misc] - the result's method is the planning method
        super().__init__(*args, **kwargs)
        cfg = planner.config
        self.planner, self.method, self.on_record = planner, method, on_record
        self.rng = random.Random(f"plan:{self.task.name}:{method}:{self.seed}")
        self.gen = torch.Generator().manual_seed(self.seed)
        self.pairs = task_pair_texts(self.task, int(planner.training_data.get("task_pairs", 4)))  # as trained
        self.refiner = OnlineRefiner(planner.wm, cfg.refine_for(method), cfg.refine_lr, seed=self.seed)
        self.refine_log: list[dict] = []

    def _requests(self) -> int:
        return sum(self.env.spend.llm_calls.values()) + sum(self.env.spend.cache_hits.values())

    def search(self) -> None:
        cfg, task = self.planner.config, self.task
        self.records[0].requests = self._requests()
        full = len(self.examples)
        for step in range(cfg.max_steps):
            chain, current, path = self.best, self.best_eval, list(self.best_edits)
            candidates = self.space.propose(chain, cfg.candidates, self.rng)
            order, predicted, unc = self.planner._rank(self.method, chain, (task.description, self.pairs),
                                                       candidates, self.rng, self.gen)
            tried: list[SearchRecord] = []
            broke = False
            try:
                for i in order:
                    if len(tried) == cfg.verify_top:
                        break
                    nxt = apply_edit(chain, candidates[i])
                    if not self.env.affordable(*self.env.cost_of(nxt, full)):
                        broke = True  # nothing more can be verified at full fidelity
                        break
                    if self.known(nxt):  # never pay twice for a chain
                        continue
                    ev_next = self.evaluate(nxt, [*path, candidates[i]], note=f"step {step}",
                                            predicted=predicted[i], uncertainty=unc[i])
                    rec = self.records[-1]
                    rec.step, rec.edit, rec.requests = step, candidates[i].to_dict(), self._requests()
                    tried.append(rec)
                    self.refiner.add(transition_row(task.name, task.description, step, chain, current, candidates[i],
                                                    nxt, ev_next, self.method, self.pairs))
            finally:
                self._close_step(step, tried)
            if broke:
                return

    def _close_step(self, step: int, tried: list[SearchRecord]) -> None:
        """One accepted move per step (the best verified chain, if it beat the incumbent), the live lines,
        and the Dyna refinement on the step's verified transitions.
        """
        accepted = [r for r in tried if r.accepted]  # each improved on the one before: the last is the move
        for rec in accepted[:-1]:
            rec.accepted = False
        if self.on_record is not None:  # after the accept decision: a live line never contradicts the summary
            for rec in tried:
                self.on_record(rec)
        if tried:
            losses = self.refiner.refine()
            if losses:
                self.refine_log.append({"step": step, **losses})
        if self._bar is not None and self.best_eval is not None:
            self._bar.set_postfix(best=f"{self.best_eval.accuracy:.3f}", step=step)


def collection_cost(training_data: dict, task: Task, mode: str) -> dict:
    """What collecting a world model's training data cost (``training_data``: its checkpoint's data
    settings): chain evaluations on every training task, and on this task (0 when the world model never
    saw it: the transfer case) with the LLM requests they took (generate mode: a reply and a gold-answer
    score per example; score mode: one score per option).
    """
    d = training_data
    tasks = list(d.get("tasks") or [])
    # each trajectory: c_0, then H steps of max(1, K) evaluated edits (K sibling edits per step)
    per_task = int(d.get("trajectories", 0)) * (int(d.get("horizon", 0)) * max(int(d.get("siblings") or 0), 1) + 1)
    this = per_task if task.name in tasks else 0
    examples = int(d.get("eval_examples") or 0)
    per_example = 2 if mode == "generate" else max((len(ex.choices) for ex in task.val[:examples]), default=0)
    return {"world_model_tasks": tasks, "task_in_training_data": this > 0, "chain_evals_this_task": this,
            "llm_requests_this_task": this * examples * per_example, "chain_evals_all_tasks": per_task * len(tasks),
            "examples_per_eval": examples}
