"""TaP's search: imagine many, verify few, and spend LLM calls the way surrogate optimizers do.

Each round, from the incumbent chain:

1. **Menu.** Propose ``menu`` distinct candidates: single edits across the three scales
   (``EditSpace.propose``) and, for a ``plans`` share, two-edit plans (a single edit followed by a
   random one). With ``compose`` > 1, also plans the ranker builds itself: its best-ranked single edits
   taken in rank order, ``compose`` at a time, applied together (disjoint groups, so no two share an
   edit), which lets a right ranker take several of its steps in one verified round. With
   ``compose_hedge``, how many of the ranker's entrants are composed plans is measured, not assumed
   (step 6).
2. **Imagine.** Score every candidate with the world model, without the LLM: the predicted change
   of accuracy (plus ``dense_weight`` times the change of the gold-answer probability) and its
   calibrated uncertainty (``WorldModel.edit_effect``), from the task's train pairs alone on a task
   never trained on.
3. **Acquire.** Pick ``enter`` candidates by an upper confidence bound, mean + ``beta`` x
   uncertainty (INSTINCT / EASE pick by UCB); an ``explore`` share of them uniformly at random. With
   ``op_bonus`` (and ``adapt``) the uncertainty also holds how little this task has measured the candidate's
   operations (step 7's posterior): the same for every candidate until something is measured, then an operation
   the search has not tried outranks one it has tried at the same predicted mean, as optimism under
   uncertainty asks (the non-learned prior has no uncertainty of its own, so without it the acquisition ranks
   by the mean). With ``batch_bonus`` the ranked entrants are picked one at a time, each counted as measured
   before the next is picked (GP-BUCB's hallucinated observations: the posterior's spread shrinks, its mean
   stays), so one round does not spend every ranked slot on the same untried operation.
4. **Successive halving on paired examples** (TRIPLE, HbBoPs' Hyperband, MIPROv2's minibatches):
   every entrant is evaluated on the first ``rungs[0]`` search examples, the better half (accuracy,
   then gold-answer probability, on the same examples) goes on to the next rung, paying only the new
   examples, up to the full ``eval_examples``. A candidate replaces the incumbent only if it beats it
   on the same examples at the top rung (GEPA's acceptance); the incumbent's own evaluation is
   always at full fidelity, so a lucky small-rung score never becomes the incumbent (winner's curse).
   With ``early_accept`` = alpha > 0 the halving races instead (F-Race, Hoeffding races): after each rung
   below the top, the entrant that beats the incumbent on the same examples by an exact one-sided paired
   sign test at level alpha (wins against losses, ties dropped) becomes the incumbent at once and the
   round ends, so an obvious gain does not pay for the upper rungs of every survivor. The rest of its
   examples are paid when a full evaluation of another chain is compared with it
   (``Search.complete_incumbent``), so acceptance stays paired on the same examples. With ``lazy_initial`` the
   initial chain is held the same way from the start: evaluated on the first rung's examples only, it pays each
   upper rung when an entrant first reaches it, so a round that accepts early has not paid for examples that no
   comparison used.
5. **Carry the evidence over** (``carry`` > 0): entrants that beat the incumbent on the same examples at
   the highest rung they reached but were not accepted re-enter the next round first, ahead of the
   acquisition, their edits re-applied to the new incumbent (or, when nothing was accepted, as they
   were, so their paid rungs cost nothing again). Measured evidence outranks any prediction, and a
   rejected round's halving resumes instead of starting over.
6. **Weigh the ranker against chance** (``hedge``): every round's ranked and random entrants are measured on
   the first rung against the incumbent on the same examples; the ranked share of the next round's entrants
   is the posterior probability that ranked entrants gain more (``tap.planning.hedge``). A ranker that
   misleads on this task hands its slots to uniform draws, and the search tends to ``random-sh``. Off in
   this class (the benchmark's ``prior-sh`` rows), on by default in ``plan.py`` and the Python API
   (``PlanConfig.hedge``). With ``hedge_window`` = W it weighs only the last W rounds' entrants: a ranker's
   edge can be used up (the prior's is mostly in its first round), and old evidence would keep trusting it.
   With ``hedge_on`` = ``reached`` an entrant's evidence is instead its accuracy change at the highest rung
   it reached (after the round's halving): what acceptance decides on, measured on the most examples the
   search paid for it. The first rung's score can favour the ranker for a change acceptance never rewards
   (more demonstrations raise the gold answer's probability on arithmetic and leave its accuracy at zero,
   then lose at the upper rungs). ``compose_hedge`` weighs the composed plans against the ranker's other picks the
   same way: one composed entrant a round to start with, then the posterior probability that they gain more
   sets their share of the ranked slots (at least one each), so a ranker whose several steps at once mislead
   (more demonstrations on arithmetic) takes them one at a time again.
7. **Learn online**, two ways, both off in this class:
   - ``adapt`` > 0: every verified candidate's measured change against the incumbent (same examples,
     at the highest rung it reached) corrects the ranker's predictions per edit operation for the
     rest of the search (``tap.planning.adapt.OpCorrection``, a closed-form Bayesian update). On by
     default in ``plan.py`` and the Python API (``PlanConfig.adapt``, 0.1 for ``prior-sh`` and ``sh``):
     a ranker that keeps proposing an operation the task has refuted (added demonstrations on
     arithmetic) stops ranking it first after one round (``benchmarks/results/adapt/PLAN.md``);
     ``adapt_edit`` > 0 also learns each measured edit's own departure inside its operation
     (``EditCorrection``; off by default, ``benchmarks/results/edit/PLAN.md``);
   - ``refine_steps`` > 0: every verified single-edit transition, at whatever rung, goes back into the
     world model (Dyna-style refinement, ``OnlineRefiner``) before the next round.

``scorer`` chooses what ranks the menu: ``model`` (the world model's effect head), ``gradient`` (the
relaxed gradient planner's return with the candidate as first edit), ``policy`` (an imagination
policy's score), ``prior`` (the non-learned prior: each edit's operation's mean accuracy change in the
world model's training data) or ``random`` (a uniform choice: ``random-sh``, the baseline that
isolates what the model adds). ``gradient`` and ``policy`` rank single edits only (no plans in the
menu) and carry no uncertainty. Every
variant shares the menu, the halving and the acceptance, and the budget lives in the
``Environment`` (LLM calls and/or chain evaluations), so equal budgets are equal calls.
"""

from __future__ import annotations

import math
import time
from typing import Literal

import torch

from tap.chains.chain import Chain
from tap.chains.edits import Edit, apply_edit
from tap.collection.schema import task_pair_texts
from tap.env import Evaluation
from tap.errors import TapError
from tap.planning.adapt import EditCorrection, OpCorrection, require_same_examples
from tap.planning.hedge import RankerSkill, paired_gain
from tap.search import Search, search_key
from tap.tasks import Task

Scorer = Literal["model", "gradient", "policy", "prior", "random"]
SCORERS = ("model", "gradient", "policy", "prior", "random")
HEDGE_ON = ("first-rung", "reached")  # what the hedges weigh an entrant by (step 6)


def halving_rungs(full: int, first: int = 4) -> tuple[int, ...]:
    """Fidelities from ``first`` doubling up to ``full`` (always ending at ``full``): 32 -> (4, 8, 16, 32)."""
    if full < 1 or first < 1:
        raise TapError(f"rungs need positive fidelities, got full={full}, first={first}.")
    rungs = [full]
    while rungs[0] // 2 >= first:
        rungs.insert(0, rungs[0] // 2)
    return tuple(rungs)


class SuccessiveHalvingSearch(Search):
    """Model-guided menu, acquisition by uncertainty, successive halving, paired acceptance (module docstring).

    Args:
        world_model: a ``tap.systems.WorldModel`` (every scorer but ``random`` needs one).
        scorer: ``model`` | ``gradient`` | ``policy`` | ``prior`` | ``random``.
        policy: a ``tap.systems.ImaginationPolicy`` (the ``policy`` scorer; its world model is used).
        menu: candidates proposed per round.
        plans: share of the menu that are two-edit plans.
        enter: candidates that enter successive halving per round.
        rungs: fidelities of the halving (None: ``halving_rungs(eval_examples)``); the last is
            ``eval_examples``.
        beta: weight of the uncertainty in the acquisition (0: rank by the predicted mean).
        explore: share of the entrants drawn uniformly from the rest of the menu.
        dense_weight: weight of the predicted gold-probability change next to the accuracy change.
        fluency_weight: weight of the change in fluency (``tap.chains.fluency``: the frozen LLM's mean
            log-prob per token of instruction and steps) added to every candidate's score, to keep token
            edits readable (0: off). Its scoring requests are reported in ``costs["fluency"]``, apart from
            the budget (one short text each, cached).
        fluency_top: with ``fluency_weight``, score fluency only for this many candidates with the highest
            acquisition value (score + beta x uncertainty) and give every other one the lowest change among them,
            so no unscored candidate can overtake a scored one (0: score every candidate). Scoring every one of a
            256-candidate menu costs about one real evaluation per round; the acquisition only reaches the top.
        refine_steps: online refinement steps after each round (0: off; ``model`` scorer only).
        adapt: prior scale (accuracy change) of this task's per-operation departure from the ranker,
            learnt online from every verified candidate (``tap.planning.adapt``; 0: off; ``model`` and
            ``prior`` scorers).
        adapt_edit: prior scale of each measured edit's own departure inside its operation, learnt online beside
            ``adapt``'s (``tap.planning.adapt.EditCorrection``: the same instruction, step or demonstration measured
            from another chain; 0: off; needs ``adapt`` > 0).
        refine_lr: learning rate of the refinement.
        task_pairs: train pairs that describe the task to the world model (as it was trained).
        training_data: the world model's data settings (``load_world_model``), to report what collecting
            its data cost on this task (``costs["collection"]``; 0 on a task it never saw).
        compose: edits per composed plan (module docstring, step 1; 0 or 1: off): up to ``enter`` plans made
            of the ranker's best single edits, scored like every other candidate (every scorer but
            ``gradient`` and ``policy``, which rank single edits only).
        compose_hedge: set the composed plans' share of the ranker's entrants from how they fare against its
            other picks (module docstring, step 6; starts at one; needs ``compose`` > 1). Off: composed plans
            compete with the rest of the menu by score alone.
        carry: most entrants of a round carried into the next (module docstring, step 5; 0: off). Applies to
            every scorer, ``random`` included: it uses measurements, not the model.
        hedge_window: with ``hedge``, weigh only the entrants of the last ``hedge_window`` rounds (0: every
            round since the start; ``tap.planning.hedge.RankerSkill``'s ``window``).
        hedge: set each round's random share from the ranker's measured skill on this task (module docstring,
            step 6; starts at ``explore``; every scorer but ``random``).
        hedge_on: what the hedges weigh an entrant by (module docstring, step 6): ``first-rung`` (its change of
            accuracy plus ``dense_weight`` x gold probability on the first rung) or ``reached`` (its accuracy
            change at the highest rung it reached, weighed once the round's halving is over).
        early_accept: level of the paired sign test that accepts an entrant below the top rung (module
            docstring, step 4; 0: off, acceptance only at the top rung). Every scorer, ``random`` included.
        lazy_initial: evaluate the initial chain on the first rung's examples only (module docstring, step 4): the
            halving pays its upper rungs when an entrant reaches them, and the rest when another chain's full
            evaluation is compared with it. Every scorer, ``random`` included.
        op_bonus: add the online correction's uncertainty to every candidate's (module docstring, step 3): the
            mean over its edits of the posterior standard deviation of each edit's operation's departure
            (``OpCorrection.spread``), combined in quadrature with the ranker's own. Needs ``adapt`` > 0.
        batch_bonus: pick the ranked entrants of a round one at a time, each lowering the operation bonus of the
            candidates after it as if it had been measured on the first rung at the least noise such a measurement
            can have (module docstring, step 3; ``OpCorrection.imagined``). Needs ``op_bonus``.
        max_rounds: most rounds (the budget normally ends the search first).
        **kwargs: ``Search`` arguments (llm, task, budget, seed, budget_calls, eval_examples, ...).
    """

    name = "tap-sh"

    def __init__(self, *args, world_model=None, scorer: Scorer = "model", policy=None, menu: int = 256,
                 plans: float = 0.25, enter: int = 8, rungs: tuple[int, ...] | None = None, beta: float = 1.0,
                 explore: float = 0.125, dense_weight: float = 0.25, fluency_weight: float = 0.0,
                 fluency_top: int = 0,
                 refine_steps: int = 0, refine_lr: float = 1e-4, adapt: float = 0.0, adapt_edit: float = 0.0,
                 task_pairs: int = 4,
                 training_data: dict | None = None, carry: int = 0, hedge: bool = False, compose: int = 0,
                 compose_hedge: bool = False, hedge_window: int = 0, hedge_on: str = "first-rung",
                 early_accept: float = 0.0, lazy_initial: bool = False, op_bonus: bool = False,
                 batch_bonus: bool = False, max_rounds: int = 1000, **kwargs) -> None:
        # every ranker starts from the same random stream (seeded by the class name): with one seed, tap-sh
        # and random-sh draw the same first menu, so their comparison is paired where it can be
        super().__init__(*args, **kwargs)
        if scorer not in SCORERS:
            raise TapError(f"unknown scorer {scorer!r}; choose one of {list(SCORERS)}.")
        if scorer == "policy":
            if policy is None:
                raise TapError("the 'policy' scorer needs an imagination-policy checkpoint (configs/policy.yaml).")
            world_model = world_model or policy.world_model
        if scorer in ("gradient", "policy"):
            plans = 0.0  # they score a candidate as the first edit of a plan: single edits only
        if scorer != "random" and world_model is None:
            raise TapError(f"the {scorer!r} scorer needs a world model: pass a checkpoint (plan.py --checkpoint), "
                           "or use scorer='random' (random-sh).")
        if menu < 1 or enter < 1 or not 0 <= plans <= 1 or not 0 <= explore <= 1 or beta < 0 or adapt < 0:
            raise TapError(f"invalid search settings: menu ({menu}) and enter ({enter}) must be >= 1, plans "
                           f"({plans}) and explore ({explore}) in [0, 1], beta ({beta}) and adapt ({adapt}) >= 0.")
        if not 0 <= carry < enter:
            raise TapError(f"carry ({carry}) must be in 0..enter-1 ({enter - 1}): carried entrants take entry slots "
                           "and at least one must stay for a new candidate.")
        if adapt_edit < 0 or (adapt_edit and not adapt):
            raise TapError(f"adapt_edit ({adapt_edit}) learns each edit's departure inside the per-operation "
                           "correction: it must be >= 0 and needs adapt > 0 (0: off).")
        if op_bonus and not adapt:
            raise TapError("op_bonus reads the online correction's uncertainty per operation: it needs adapt > 0.")
        if batch_bonus and not op_bonus:
            raise TapError("batch_bonus picks entrants one at a time against the operation bonus: it needs "
                           "op_bonus=True (and adapt > 0).")
        if adapt and scorer not in ("model", "prior"):
            raise TapError(f"adapt corrects a ranker's predicted accuracy change; the {scorer!r} scorer predicts "
                           "none. Use scorer 'model' or 'prior', or adapt=0.")
        if hedge and scorer == "random":
            raise TapError("hedge weighs a ranker against uniform draws; the 'random' scorer has no ranker to weigh. "
                           "Use another scorer, or hedge=False.")
        if compose < 0 or (compose > 1 and scorer in ("gradient", "policy")):
            raise TapError(f"compose ({compose}) must be >= 0, and the {scorer!r} scorer ranks single edits only: "
                           "use compose=0 with it, or another scorer.")
        if compose_hedge and scorer == "random":
            raise TapError("compose_hedge weighs composed plans against the ranker's other picks; the 'random' "
                           "scorer has no ranker. Use another scorer, or compose_hedge=False.")
        if compose_hedge and (compose < 2 or enter < 3):
            raise TapError(f"compose_hedge weighs composed plans against the ranker's other picks: it needs compose "
                           f">= 2 (got {compose}) and enter >= 3 (got {enter}: a composed, a ranked and a random "
                           "entrant a round).")
        if hedge_window < 0 or (hedge_window and not hedge):
            raise TapError(f"hedge_window ({hedge_window}) counts the rounds the hedge weighs: >= 0, and only with "
                           "hedge=True (0: every round).")
        if hedge_on not in HEDGE_ON:
            raise TapError(f"hedge_on ({hedge_on!r}) is what the hedges weigh an entrant by: one of {list(HEDGE_ON)}.")
        if not 0 <= early_accept < 1:
            raise TapError(f"early_accept ({early_accept}) is the level of a sign test: in [0, 1) (0: off).")
        if hedge and enter < 2:
            raise TapError(f"hedge needs enter >= 2 (one ranked and one random entrant a round), got {enter}.")
        full = len(self.examples)
        self.rungs = tuple(rungs) if rungs else halving_rungs(full)
        if list(self.rungs) != sorted(set(self.rungs)) or self.rungs[-1] != full or self.rungs[0] < 1:
            raise TapError(f"rungs {self.rungs} must increase strictly from >= 1 and end at eval_examples ({full}).")
        self.wm, self.scorer, self.policy = world_model, scorer, policy
        self.menu_size, self.plans, self.enter, self.beta, self.explore = menu, plans, enter, beta, explore
        self.dense_weight, self.refine_steps, self.refine_lr = dense_weight, refine_steps, refine_lr
        if fluency_weight < 0 or fluency_top < 0:
            raise TapError(f"fluency_weight ({fluency_weight}) and fluency_top ({fluency_top}) must be >= 0 (0: off / "
                           "every candidate).")
        self.fluency_weight, self.fluency_top = fluency_weight, fluency_top
        self._fluency: dict[str, float] = {}  # chain text -> fluency (scored once)
        self.task_pairs, self.max_rounds = task_pairs, max_rounds
        self.training_data = dict(training_data or {}) if scorer != "random" else {}
        self.rounds: list[dict] = []  # what each round imagined, picked and verified (the "why")
        self.adapt, self.carry, self.hedge, self.compose = adapt, carry, hedge, compose
        self._carried: list[tuple[Edit, ...]] = []  # edits of the entrants carried into the next round
        self.adapt_edit = adapt_edit
        self._correction = (EditCorrection(adapt, adapt_edit) if adapt_edit else OpCorrection(adapt)) if adapt else None
        self.hedge_window, self.early_accept, self.hedge_on = hedge_window, early_accept, hedge_on
        self.lazy_initial, self.op_bonus, self.batch_bonus = lazy_initial, op_bonus, batch_bonus
        self._own: list[float] = []  # the ranker's own uncertainty of the current menu (before the bonus)
        self._pick_sigma: dict[int, float] = {}  # this round's batch picks -> the uncertainty they were picked at
        self._skill = RankerSkill(explore, window=hedge_window or None) if hedge else None
        self._mix = RankerSkill(explore, arms=("ranked", "composed")) if compose_hedge else None
        self.compose_hedge = compose_hedge
        self._n_composed = 0  # composed plans at the end of this round's menu
        self._source: dict[int, str] = {}  # this round's entrant (menu index) -> "ranked" | "random" | "composed"
        self._change: list[float] = []  # the ranker's predicted accuracy change of the current menu
        self._at_rung: dict[tuple[str, int], Evaluation] = {}  # (incumbent, n) -> its evaluation on n examples
        self._refiner = None
        if scorer == "model" and refine_steps > 0:
            from tap.planning.refine import OnlineRefiner

            self._refiner = OnlineRefiner(world_model, refine_steps, refine_lr, seed=self.seed)
        if self.name == SuccessiveHalvingSearch.name and scorer != "model":
            self.name = {"random": "random-sh", "prior": "prior-sh", "gradient": "gradient-sh",
                         "policy": "policy-sh"}[scorer]

    # ---- 1. the menu -----------------------------------------------------------------------------
    def _settled(self, chain: Chain) -> bool:
        """Whether ``chain`` is no candidate: evaluated in full before, or the initial chain (the first incumbent,
        held on whatever examples a lazy start paid for it, as an eager start holds it on all).
        """
        return self.known(chain) or (self.lazy_initial and chain.to_json() == self.start.to_json())

    def _menu(self, parent: Chain) -> list[tuple[tuple[Edit, ...], Chain]]:
        """Distinct candidates (edits from ``parent``, the chain they make), singles first, then plans."""
        n_plans = round(self.menu_size * self.plans)
        singles = self.space.propose(parent, self.menu_size - n_plans, self.rng)
        out, seen = [], {parent.to_json()}
        for e in singles:
            chain = apply_edit(parent, e)
            seen.add(chain.to_json())
            if not self._settled(chain):  # evaluated in full before, or the initial chain: cannot newly beat it
                out.append(((e,), chain))
        for _ in range(n_plans * 3):
            if len(out) >= self.menu_size or not singles:
                break
            first = self.rng.choice(singles)
            mid = apply_edit(parent, first)
            try:
                second = self.space.sample(mid, self.rng)
                chain = apply_edit(mid, second).validate()
            except Exception:  # noqa: BLE001 - an invalid draw is simply redrawn
                continue
            if chain.to_json() not in seen:
                seen.add(chain.to_json())
                if not self._settled(chain):
                    out.append(((first, second), chain))
        return out

    def _composed(self, parent: Chain, menu: list, score: list[float]) -> list[tuple[tuple[Edit, ...], Chain]]:
        """Up to ``enter`` plans of ``compose`` edits each: the menu's single edits in the ranker's order (ties by
        menu order), each group started afresh from ``parent`` and filled with the next edits that still apply
        and change the chain; no edit is in two groups. Plans equal to a menu chain or a fully evaluated one
        are dropped.
        """
        singles = sorted((i for i, (edits, _) in enumerate(menu) if len(edits) == 1), key=lambda i: (-score[i], i))
        seen = {parent.to_json(), *(c.to_json() for _, c in menu)}
        out, group, chain = [], [], parent
        for i in singles:
            if len(out) >= self.enter:
                break
            try:
                nxt = apply_edit(chain, menu[i][0][0]).validate()
            except Exception:  # noqa: BLE001 - an edit that no longer applies after the group's others is skipped
                continue
            if nxt.to_json() == chain.to_json():
                continue
            group, chain = [*group, menu[i][0][0]], nxt
            if len(group) == self.compose:
                if chain.to_json() not in seen and not self._settled(chain):
                    seen.add(chain.to_json())
                    out.append((tuple(group), chain))
                group, chain = [], parent
        return out

    def _carried_menu(self, parent: Chain, menu: list) -> list[tuple[tuple[Edit, ...], Chain]]:
        """Last round's carried entrants as candidates from ``parent`` (their edits re-applied; those that no
        longer apply, change nothing, were evaluated in full, or are already in the menu are dropped).
        """
        out, seen = [], {parent.to_json(), *(c.to_json() for _, c in menu)}
        for edits in self._carried:
            chain = parent
            try:
                for e in edits:
                    chain = apply_edit(chain, e)
                chain.validate()
            except Exception:  # noqa: BLE001 - an edit that no longer applies is dropped
                continue
            if chain.to_json() not in seen and not self._settled(chain):
                seen.add(chain.to_json())
                out.append((edits, chain))
        self._carried = []
        return out

    # ---- 2. imagination ----------------------------------------------------------------------------
    @torch.no_grad()
    def _imagine(self, parent: Chain, menu: list[tuple[tuple[Edit, ...], Chain]]) -> tuple[list[float], list[float]]:
        """Predicted score and uncertainty of every candidate (zeros for ``random``)."""
        if self.scorer == "random":
            return [0.0] * len(menu), [0.0] * len(menu)
        wm = self.wm
        if self.scorer == "prior":
            ops = torch.tensor([e.op_id for edits, _ in menu for e in edits], dtype=torch.long, device=wm.device)
            prior = wm.op_prior(ops).tolist()
            out, i = [], 0
            for edits, _ in menu:
                out.append(sum(prior[i : i + len(edits)]))
                i += len(edits)
            self._change = list(out)
            return out, [0.0] * len(menu)
        if self.scorer in ("gradient", "policy"):
            pairs = task_pair_texts(self.task, self.task_pairs)
            state = wm.observe(wm.encode_chains([parent], self.task.description, pairs))  # batch 1
            actions, scales = wm.embed_edits([edits[0] for edits, _ in menu])  # (K, A), (K, 3): singles only
            if self.scorer == "policy":
                return self.policy.actor_logits(wm.features(state), actions.unsqueeze(0))[0].tolist(), [0.0] * len(menu)
            from tap.planning.gradient import GradientPlanner

            gen = torch.Generator().manual_seed(self.seed * 100_003 + len(self.rounds))
            return GradientPlanner(wm).plan(state, actions, scales, generator=gen).returns.tolist(), [0.0] * len(menu)
        mean, std = imagined_effects(wm, self.task, parent, [edits for edits, _ in menu], self.task_pairs)
        self._change = mean[:, 0].tolist()
        score = mean[:, 0] + self.dense_weight * mean[:, 1]
        return score.tolist(), std[:, 0].tolist()

    def _rank(self, parent: Chain, menu: list) -> tuple[list[float], list[float]]:
        """What the acquisition reads for every candidate: the ranker's score (plus the online correction and
        the fluency term when they are on) and its uncertainty.
        """
        score, sigma = self._imagine(parent, menu)
        self._own = list(sigma)
        if self._correction is not None and self._correction.observations:
            score = [s + c for s, c in zip(score, self._correction.correct([e for e, _ in menu]))]
        if self.op_bonus:  # uniform before any measurement: the first round ranks as without it
            sigma = [math.hypot(s, b) for s, b in zip(sigma, self._correction.spread([e for e, _ in menu]))]
        if self.fluency_weight:
            score = self._add_fluency(parent, menu, score, sigma)
        return score, sigma

    def _add_fluency(self, parent: Chain, menu: list, score: list[float],
                     sigma: list[float] | None = None) -> list[float]:
        """``score + fluency_weight * (fluency(candidate) - fluency(parent))``; a text with no words counts as
        unchanged. With ``fluency_top`` only the top candidates by ``score + beta * sigma`` are scored, the rest get
        the lowest change among them. (The random scorer's pick stays uniform whatever the scores.)
        """
        from tap.chains.fluency import chain_text, fluency

        scored = range(len(menu))
        if self.fluency_top and len(menu) > self.fluency_top:
            scored = sorted(self._by_acquisition(score, sigma or [0.0] * len(score))[: self.fluency_top])
        chains = [parent, *(menu[i][1] for i in scored)]
        new = list({chain_text(c): c for c in chains if chain_text(c) not in self._fluency}.values())
        for c, f in zip(new, fluency(self.llm, new) if new else []):
            self._fluency[chain_text(c)] = f
        base = self._fluency[chain_text(parent)]

        def change(c: Chain) -> float:
            f = self._fluency[chain_text(c)]
            return 0.0 if math.isnan(f) or math.isnan(base) else f - base

        changes = {i: change(menu[i][1]) for i in scored}
        floor = min(changes.values(), default=0.0)  # an unscored candidate is taken to be as bad as the worst
        return [s + self.fluency_weight * changes.get(i, floor) for i, s in enumerate(score)]

    # ---- 3. acquisition ------------------------------------------------------------------------------
    def _by_acquisition(self, score: list[float], sigma: list[float]) -> list[int]:
        """Candidate indices by UCB, ``score + beta * sigma``, highest first (ties: the lower index)."""
        ucb = [m + self.beta * s for m, s in zip(score, sigma)]
        return sorted(range(len(score)), key=lambda i: (-ucb[i], i))

    def _acquire(self, score: list[float], sigma: list[float], slots: int | None = None,
                 candidates: list[tuple[Edit, ...]] | None = None, own: list[float] | None = None) -> list[int]:
        """Indices of ``slots`` (default ``enter``) entrants: UCB picks first, then an ``explore`` share uniformly
        from the rest. With ``batch_bonus``, ``candidates`` (each one's edits) and ``own`` (the ranker's own
        uncertainty) let the UCB picks be made one at a time (``_batch``).
        """
        self._pick_sigma = {}
        n = min(self.enter if slots is None else slots, len(score))
        if self.scorer == "random":
            drawn = self.rng.sample(range(len(score)), n)
            self._source = {i: "random" for i in drawn}
            return drawn
        if self._skill is not None:
            n_random = self._skill.random_slots(n)
        else:
            n_random = min(round(n * self.explore), n - 1) if n > 1 else 0
        order = self._by_acquisition(score, sigma)
        if self._mix is not None:  # composed plans take a measured share of the ranked slots
            first = len(score) - self._n_composed
            plain = [i for i in order if i < first]
            composed = [i for i in order if i >= first]
            n_composed = min(self._mix.random_slots(n - n_random), len(composed))
            if self.batch_bonus:  # the ranked picks first, then the composed ones, each counted as measured
                picks, belief = self._batch(plain, n - n_random - n_composed, score, own, candidates, self._correction)
                chosen, _ = self._batch(composed, n_composed, score, own, candidates, belief)
                taken = set(picks)
                rest = [i for i in plain if i not in taken]
            else:
                picks, chosen = plain[: n - n_random - n_composed], composed[:n_composed]
                rest = plain[len(picks):]
            drawn = self.rng.sample(rest, min(n_random, len(rest)))
            self._source = {**{i: "ranked" for i in picks}, **{i: "composed" for i in chosen},
                            **{i: "random" for i in drawn}}
            return picks + chosen + drawn
        if self.batch_bonus:
            picks, _ = self._batch(order, n - n_random, score, own, candidates, self._correction)
            taken = set(picks)
            rest = [i for i in order if i not in taken]
        else:
            picks, rest = order[: n - n_random], order[n - n_random:]
        drawn = self.rng.sample(rest, n_random)
        self._source = {**{i: "ranked" for i in picks}, **{i: "random" for i in drawn}}
        return picks + drawn

    def _batch(self, pool: list[int], count: int, score: list[float], own: list[float],
               candidates: list[tuple[Edit, ...]], belief: OpCorrection) -> tuple[list[int], OpCorrection]:
        """``count`` picks from ``pool`` by UCB, one at a time: after each, the operation bonus is recomputed from a
        belief that has also measured the pick on the first rung (noise variance 1 / rungs[0]^2, the floor of
        ``paired_residual_noise`` there: the most one first-rung measurement can tell). Returns the picks and that
        belief. Ties go to the lower index, as in the one-shot ranking.
        """
        picks, left = [], list(pool)
        noise = 1.0 / self.rungs[0] ** 2
        for _ in range(min(count, len(left))):
            bonus = belief.spread([candidates[i] for i in left])
            ucb = [score[i] + self.beta * math.hypot(own[i], b) for i, b in zip(left, bonus)]
            j = max(range(len(left)), key=lambda j: (ucb[j], -left[j]))
            i = left.pop(j)
            picks.append(i)
            self._pick_sigma[i] = math.hypot(own[i], bonus[j])
            belief = belief.imagined(candidates[i], noise)
        return picks, belief

    # ---- 4. successive halving ------------------------------------------------------------------------
    def _halve(self, parent: Chain, parent_edits: list[dict], menu: list, picks: list[int], score: list[float],
               sigma: list[float]) -> list[dict]:
        """Run the entrants up the rungs; returns what each was measured at (for the round's log)."""
        alive = list(picks)
        measured: dict[int, dict] = {}
        last: dict[int, tuple[int, object]] = {}  # entrant -> (rung, evaluation) at the highest rung it reached
        for level, n in enumerate(self.rungs):
            keys, record = {}, {}
            for i in alive:
                edits, chain = menu[i]
                guess = {"predicted": score[i], "uncertainty": sigma[i]} if self.scorer != "random" else {}
                ev = self.evaluate(chain, [*parent_edits, *(e.to_dict() for e in edits)], n=n,
                                   note=f"rung {n}: " + " + ".join(f"{e.scale}.{e.op}" for e in edits), **guess)
                keys[i] = search_key(ev)
                if self.early_accept:
                    record[i] = self.records[-1]  # this evaluation's record: the one an early acceptance marks
                measured[i] = {"rung": n, "accuracy": ev.accuracy, "dense": ev.dense}
                last[i] = (n, ev)
                if len(edits) == 1:
                    self._learn_from(parent, edits[0], chain, n, ev)
                if level == 0 and i in self._source and self.hedge_on == "first-rung":
                    self._weigh(self._source[i], paired_gain(ev, self._incumbent_at(parent, n), self.dense_weight))
            if level == len(self.rungs) - 1:
                break
            if self.early_accept and self._race(parent, menu, alive, last, record, measured):
                break
            keep = max(1, math.ceil(len(alive) / 2))
            alive = sorted(alive, key=lambda i: (keys[i], -i), reverse=True)[:keep]
        if self.hedge_on == "reached" and (self._skill is not None or self._mix is not None):
            for i, (n, ev) in sorted(last.items()):  # accuracy at the highest rung reached (incumbent: already paid)
                if i in self._source:
                    self._weigh(self._source[i], paired_gain(ev, self._incumbent_at(parent, n, pay=False), 0.0))
        if self._correction is not None:
            self._adapt_from(parent, menu, last)
        if self.carry:
            self._carry_from(parent, menu, last)
        return [{"edits": [e.to_dict() for e in menu[i][0]], "predicted": score[i], "uncertainty": sigma[i], **m}
                for i, m in measured.items()]

    def _race(self, parent: Chain, menu: list, alive: list[int], last: dict, record: dict, measured: dict) -> bool:
        """Accept the best entrant of this rung (accuracy, then gold-answer probability) among those that beat the
        incumbent by the paired sign test at level ``early_accept`` on the same examples; True if one was.
        """
        winners = []
        for i in alive:
            n, ev = last[i]
            wins, losses, p = sign_test(ev, self._incumbent_at(parent, n))
            measured[i]["sign_test"] = {"wins": wins, "losses": losses, "p": round(p, 6)}
            if p <= self.early_accept:
                winners.append((search_key(ev), -i))
        if not winners:
            return False
        i = -max(winners)[1]
        measured[i]["accepted_early"] = True
        test = measured[i]["sign_test"]
        self.accept_early(menu[i][1], last[i][1], record[i],
                          why=f"sign test {test['wins']}-{test['losses']}, p {test['p']:.4f} <= {self.early_accept}")
        return True

    def _weigh(self, source: str, gain: float) -> None:
        """One entrant's first-rung gain into the hedges: a composed plan is the ranker's pick against random
        draws, and a composed plan against the ranker's other picks.
        """
        if self._skill is not None:
            self._skill.add("random" if source == "random" else "ranked", gain)
        if self._mix is not None and source != "random":
            self._mix.add(source, gain)

    # ---- 5. carrying the evidence over ---------------------------------------------------------------
    def _carry_from(self, parent: Chain, menu: list, last: dict[int, tuple[int, object]]) -> None:
        """Keep the ``carry`` entrants with the largest margin over the incumbent on the same examples (accuracy,
        then gold-answer probability) at the highest rung they reached, among those that beat it and did not
        become the new incumbent.
        """
        best = self.best.to_json()
        ahead = []
        for i, (n, ev) in sorted(last.items()):
            ref = self._incumbent_at(parent, n)
            margin = (ev.accuracy - ref.accuracy, ev.dense - ref.dense)
            if margin > (0.0, 0.0) and menu[i][1].to_json() != best:
                ahead.append((margin, i))
        ahead.sort(key=lambda m: (m[0], -m[1]), reverse=True)
        self._carried = [menu[i][0] for _, i in ahead[: self.carry]]

    # ---- 6. learning online --------------------------------------------------------------------------
    def _adapt_from(self, parent: Chain, menu: list, last: dict[int, tuple[int, object]]) -> None:
        """Every entrant's measured change against the incumbent on the same examples, minus the ranker's
        prediction, updates the per-operation correction (``tap.planning.adapt``).
        """
        from tap.planning.adapt import paired_residual_noise

        for i, (n, ev) in sorted(last.items()):
            change, noise = paired_residual_noise(ev, self._incumbent_at(parent, n))
            self._correction.add(menu[i][0], change - self._change[i], noise)

    def _incumbent_at(self, parent: Chain, n: int, pay: bool = True) -> Evaluation:
        """The incumbent's evaluation on the first ``n`` examples, the paired reference of a rung-``n`` entrant:
        already paid (no budget), run once per (incumbent, rung) and kept for both ways of learning online.
        (Not a slice of its full evaluation: in score mode the label-bias correction depends on the examples.)
        An incumbent accepted early on fewer examples first pays the ones it lacks, as a recorded evaluation;
        everything else was paid before and is read again for free, even once the budget is spent. With
        ``pay=False`` it never pays: an unpaid rung raises (``Environment.reread``).
        """
        key = (parent.to_json(), n)
        if key not in self._at_rung:
            held = self.best_eval
            if pay and parent.to_json() == self.best.to_json() and held is not None and n > len(held.results):
                self._at_rung[key] = (self.complete_incumbent() if n == len(self.examples) else
                                      self.evaluate(parent, self.best_edits, n=n, note=f"incumbent at rung {n}"))
            else:
                self._at_rung[key] = self.env.reread(parent, n)
        return self._at_rung[key]

    def _learn_from(self, parent: Chain, edit: Edit, child: Chain, n: int, ev_child) -> None:
        if self._refiner is None:
            return
        from tap.planning.refine import transition_row

        ev_parent = self._incumbent_at(parent, n)
        self._refiner.add(transition_row(self.task.name, self.task.description, len(self.rounds), parent, ev_parent,
                                         edit, child, ev_child, self.name,
                                         task_pair_texts(self.task, self.task_pairs)))

    # ---- the loop --------------------------------------------------------------------------------------
    def evaluate_initial(self) -> Evaluation:
        """The initial chain on every search example, or with ``lazy_initial`` on the first rung's only: the
        first incumbent, held on the examples paid so far like one accepted early (``Search.accept_early``).
        """
        n = self.rungs[0]
        if not self.lazy_initial or n == len(self.examples):
            return super().evaluate_initial()
        ev = self.evaluate(self.start, [], n=n, note=f"initial, on the first rung ({n} examples)")
        self.records[-1].accepted = True
        self.best, self.best_eval, self.best_edits = self.start, ev, []
        return ev

    def search(self) -> None:
        for _ in range(self.max_rounds):
            parent, parent_edits = self.best, list(self.best_edits)
            t0 = time.perf_counter()
            menu = self._menu(parent)
            carried = self._carried_menu(parent, menu) if self.carry else []
            menu = carried + menu  # carried entrants first: they enter ahead of the acquisition
            if not menu:
                return
            score, sigma = self._rank(parent, menu)
            composed = self._composed(parent, menu, score) if self.compose > 1 else []
            if composed:  # ranked the same way, after the menu (carried entrants stay first)
                change, own = self._change, self._own
                more, more_sigma = self._rank(parent, composed)
                self._change, self._own = change + self._change, own + self._own
                menu, score, sigma = menu + composed, score + more, sigma + more_sigma
            self._n_composed = len(composed)
            adapted = {}
            if self._correction is not None and self._correction.observations:
                adapted = {"adapt": self._correction.summary()}  # what this task taught so far, per operation
            k = len(carried)
            hedged = {"hedge": self._skill.summary()} if self._skill is not None else {}  # what set the shares
            if self._mix is not None:
                hedged["compose_hedge"] = self._mix.summary()  # what set the composed plans' share
            picks = list(range(k)) + [k + i for i in self._acquire(score[k:], sigma[k:], self.enter - k,
                                                                   [e for e, _ in menu[k:]], self._own[k:])]
            for i, s in self._pick_sigma.items():  # the uncertainty each batch pick was made at
                sigma[k + i] = s
            self._source = {k + i: source for i, source in self._source.items()}  # menu indices, carried first
            if self._mix is not None:
                hedged["compose_hedge"]["entrants"] = sum(s == "composed" for s in self._source.values())
            entry = {"round": len(self.rounds), "menu": len(menu), "entrants": len(picks), "carried": k,
                     "plans_in_menu": sum(len(e) > 1 for e, _ in menu), "composed": len(composed),
                     "random_entrants": sum(s == "random" for s in self._source.values()),
                     "planning_seconds": round(time.perf_counter() - t0, 4), **adapted, **hedged}  # menu to acquisition
            self.rounds.append(entry)
            try:
                entry["verified"] = self._halve(parent, parent_edits, menu, picks, score, sigma)
            finally:
                entry["accepted"] = self.best.to_json() != parent.to_json()
                if self._skill is not None:
                    self._skill.next_round()
                if self._refiner is not None:
                    entry["refinement"] = self._refiner.refine()

    def config(self) -> dict:
        out = super().config()
        for k in ("wm", "rounds", "training_data", "policy"):
            out.pop(k, None)
        return {**out, "rungs": list(self.rungs)}

    def run(self):
        from tap.planning.planner import collection_cost

        result = super().run()
        result.config["rounds"] = self.rounds
        result.costs["collection"] = collection_cost(self.training_data, self.task, self.env.mode)
        result.costs["fluency"] = {"requests": len(self._fluency)}
        result.costs["planning"] = planning_cost(self.rounds, result.costs["search"], len(self.examples))
        return result


def sign_test(child: Evaluation, parent: Evaluation) -> tuple[int, int, float]:
    """Exact one-sided paired sign test that ``child`` is more accurate than ``parent`` on the same examples:
    (examples only ``child`` gets right, examples only ``parent`` gets right, p-value); ties are dropped, and
    with no untied example p is 1.
    """
    require_same_examples(child, parent)
    wins = sum(c.correct and not p.correct for c, p in zip(child.results, parent.results))
    losses = sum(p.correct and not c.correct for c, p in zip(child.results, parent.results))
    m = wins + losses
    p = sum(math.comb(m, k) for k in range(wins, m + 1)) / 2**m if m else 1.0
    return wins, losses, p


def planning_cost(rounds: list[dict], search: dict, full: int) -> dict:
    """What planning (menu, imagination, acquisition) cost per round, and its ratio to one real evaluation
    at full fidelity (the rest of the search time, spent evaluating, per ``full`` example evaluations).
    """
    seconds = sum(r.get("planning_seconds", 0.0) for r in rounds)
    per_round = seconds / len(rounds) if rounds else 0.0
    evals = search["example_evals"] / full if full else 0.0
    per_eval = max(search["seconds"] - seconds, 0.0) / evals if evals else 0.0
    return {"seconds": round(seconds, 3), "rounds": len(rounds), "per_round": round(per_round, 4),
            "full_evaluation_seconds": round(per_eval, 4),
            "ratio": round(per_round / per_eval, 4) if per_eval > 0 else None}


@torch.no_grad()
def imagined_effects(wm, task: Task, parent: Chain, candidates: list[tuple[Edit, ...]],
                     task_pairs: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """The world model's predicted change from ``parent`` for each candidate (a single edit or a plan of
    several): mean and calibrated std, (K, 2) each, columns (accuracy, dense). No LLM call. A model that reads
    each edit's relevance (``WorldModel(relevance=True)``) gets it from the candidate applied to the real chain.
    """
    pairs = task_pair_texts(task, task_pairs)
    state = wm.observe(wm.encode_chains([parent], task.description, pairs))  # batch 1
    mean, std = torch.zeros(len(candidates), 2), torch.zeros(len(candidates), 2)
    for length in sorted({len(edits) for edits in candidates}):
        idx = [i for i, edits in enumerate(candidates) if len(edits) == length]
        flat = [e for i in idx for e in candidates[i]]
        actions, scales = wm.embed_edits(flat)  # (len(idx) * length, A), (.., 3)
        start = {k: v.expand(len(idx), *v.shape[1:]) for k, v in state.items()}
        after = wm.imagine(start, actions.view(len(idx), length, -1), scales.view(len(idx), length, -1))[-1]
        ops = torch.tensor([[e.op_id for e in candidates[i]] for i in idx], dtype=torch.long)  # (len(idx), length)
        extra = None
        if wm.hparams.get("relevance"):
            children = []
            for i in idx:
                child = parent
                for e in candidates[i]:
                    child = apply_edit(child, e)
                children.append(child)
            extra = wm.relevance_inputs([pairs] * len(idx), [parent] * len(idx), children)  # (len(idx), 2)
        m, s = wm.edit_effect(start, after, ops, extra)  # (len(idx), 2) each
        mean[idx], std[idx] = m.float().cpu(), s.float().cpu()
    return mean, std


def load_world_model(path) -> tuple:
    """A ``WorldModel`` checkpoint (file or run folder) for the search: the model (eval mode, no gradients)
    and the data settings it was trained on (``training_data``).
    """
    from tap.systems.checkpoints import read_checkpoint
    from tap.systems.world_model import WorldModel

    _, ckpt = read_checkpoint(path, WorldModel.__name__)
    wm = WorldModel._build(ckpt)
    wm.requires_grad_(False)
    data = {k: v for k, v in (ckpt.get("datamodule_hyper_parameters") or {}).items() if not k.startswith("_")}
    return wm.eval(), data


def random_sh(*args, **kwargs) -> SuccessiveHalvingSearch:
    """``random-sh``: the same search with the model replaced by a uniform choice."""
    return SuccessiveHalvingSearch(*args, scorer="random", **kwargs)


__all__ = ["SuccessiveHalvingSearch", "halving_rungs", "imagined_effects", "load_world_model", "planning_cost",
           "random_sh", "sign_test"]
