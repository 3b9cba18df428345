"""TaP's search: imagine many, verify few, and spend LLM calls the way surrogate optimizers do.

Each round, from the incumbent chain:

1. **Menu.** Propose ``menu`` distinct candidates: single edits across the three scales
   (``EditSpace.propose``) and, for a ``plans`` share, two-edit plans (a single edit followed by a
   random one). With ``compose`` > 1, also plans the ranker builds itself: its best-ranked single edits
   taken in rank order, ``compose`` at a time, applied together (disjoint groups), so a right ranker can
   take several of its steps in one verified round.
2. **Imagine.** Score every candidate without the LLM. ``ranker`` says how: ``prior`` (each edit's
   operation's mean accuracy change in the world model's training data), ``model`` (the world model's
   predicted change of accuracy plus ``dense_weight`` times the change of the gold-answer probability, with
   its calibrated uncertainty, ``WorldModel.edit_effect``), ``gradient`` (the relaxed gradient planner's return
   with the candidate as first edit), ``policy`` (an imagination policy's score) or ``random`` (a uniform
   choice: ``random-sh``, the baseline that isolates what the ranker adds). ``gradient`` and ``policy`` rank
   single edits only and carry no uncertainty.
3. **Acquire.** Pick ``enter`` candidates by an upper confidence bound, mean + ``beta`` x uncertainty
   (INSTINCT / EASE pick by UCB); an ``explore`` share of them uniformly at random. With ``op_bonus`` (and
   ``adapt``) the uncertainty also holds how little this task has measured the candidate's operations
   (step 6's posterior), so an operation not tried yet outranks a tried one at the same predicted mean.
4. **Successive halving on paired examples** (TRIPLE, HbBoPs' Hyperband, MIPROv2's minibatches): every
   entrant is evaluated on the first ``rungs[0]`` search examples, the better half (accuracy, then
   gold-answer probability, on the same examples) goes on to the next rung, paying only the new examples,
   up to the full ``eval_examples``. A candidate replaces the incumbent only if it beats it on the same
   examples at the top rung (GEPA's acceptance). With ``early_accept`` = alpha > 0 the halving races (F-Race):
   after each rung below the top, an entrant that beats the incumbent on the same examples by an exact
   one-sided paired sign test at level alpha becomes the incumbent at once and the round ends; the rest of
   its examples are paid when a full evaluation of another chain is compared with it
   (``Search.complete_incumbent``). With ``lazy_initial`` the initial chain is held the same way from the
   start: evaluated on the first rung only, it pays each upper rung when an entrant first reaches it.
5. **Weigh the ranker against chance** (``hedge``): every round's ranked and random entrants are measured on
   the first rung against the incumbent on the same examples; the ranked share of the next round's entrants
   is the posterior probability that ranked entrants gain more (``tap.planning.hedge``), so a ranker that
   misleads on this task hands its slots to uniform draws. ``compose_hedge`` weighs the composed plans
   against the ranker's other picks the same way (one composed entrant a round to start with).
6. **Learn online** (``adapt`` > 0): every verified candidate's measured change against the incumbent (same
   examples, at the highest rung it reached) corrects the ranker's predictions per edit operation for the rest
   of the search (``tap.planning.adapt.OpCorrection``, a closed-form Bayesian update).
7. **Readability** (``fluency_weight`` > 0): the change in the frozen LLM's mean log-prob per token of the
   instruction and steps is added to every candidate's score, so readable edits rank first; its scoring
   requests are reported in ``costs["fluency"]``, apart from the budget.

Every setting has a preset (``tap.planning.presets``); the budget lives in the ``Environment`` (LLM calls
and/or chain evaluations), so equal budgets are equal calls.
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
from tap.planning.adapt import OpCorrection, require_same_examples
from tap.planning.hedge import RankerSkill, paired_gain
from tap.search import Search, search_key
from tap.tasks import Task

Ranker = Literal["prior", "model", "gradient", "policy", "random"]
RANKERS = ("prior", "model", "gradient", "policy", "random")
#: rankers that predict an accuracy change: they compose plans and can be corrected online
PREDICTING = ("prior", "model")
#: the name of a run's method under each ranker (a preset may rename it: ``tap.planning.presets.METHOD_NAMES``)
RANKER_NAMES = {"prior": "tap", "model": "tap-model", "gradient": "tap-gradient", "policy": "tap-policy",
                "random": "random-sh"}


def halving_rungs(full: int, first: int = 4) -> tuple[int, ...]:
    """Fidelities from ``first`` doubling up to ``full`` (always ending at ``full``): 32 -> (4, 8, 16, 32)."""
    if full < 1 or first < 1:
        raise TapError(f"rungs need positive fidelities, got full={full}, first={first}.")
    rungs = [full]
    while rungs[0] // 2 >= first:
        rungs.insert(0, rungs[0] // 2)
    return tuple(rungs)


class SuccessiveHalvingSearch(Search):
    """Ranked menu, acquisition by uncertainty, successive halving, paired acceptance (module docstring).

    Build it from a preset (``tap.planning.presets``); every argument below is a setting of one.

    Args:
        world_model: a ``tap.systems.WorldModel`` (every ranker but ``random`` needs one).
        ranker: ``prior`` | ``model`` | ``gradient`` | ``policy`` | ``random`` (module docstring, step 2).
        policy: a ``tap.systems.ImaginationPolicy`` (the ``policy`` ranker; its world model is used).
        menu: candidates proposed per round.
        plans: share of the menu that are two-edit plans.
        enter: candidates that enter successive halving per round.
        rungs: fidelities of the halving (None: ``halving_rungs(eval_examples)``); the last is ``eval_examples``.
        beta: weight of the uncertainty in the acquisition (0: rank by the predicted mean).
        explore: share of the entrants drawn uniformly from the rest of the menu.
        dense_weight: weight of the predicted gold-probability change next to the accuracy change.
        adapt: prior scale (accuracy change) of this task's per-operation departure from the ranker, learnt
            online (step 6; 0: off; ``prior`` and ``model`` rankers).
        op_bonus: add the online correction's per-operation uncertainty to every candidate's (step 3; needs
            ``adapt``).
        hedge: set each round's random share from the ranker's measured skill on this task (step 5; starts at
            ``explore``; every ranker but ``random``).
        compose: edits per composed plan (step 1; 0: off; ``prior`` and ``model`` rankers).
        compose_hedge: set the composed plans' share of the ranker's entrants from how they fare (step 5;
            needs ``compose`` > 1).
        early_accept: level of the paired sign test that accepts an entrant below the top rung (step 4; 0: off).
        lazy_initial: evaluate the initial chain on the first rung's examples only (step 4).
        fluency_weight: weight of the change in fluency added to every candidate's score (step 7; 0: off;
            ranked searches only).
        task_pairs: train pairs that describe the task to the world model (as it was trained).
        training_data: the world model's data settings (``load_world_model``), to report what collecting its
            data cost on this task (``costs["collection"]``; 0 on a task it never saw).
        max_rounds: most rounds (the budget normally ends the search first).
        **kwargs: ``Search`` arguments (llm, task, budget, seed, budget_calls, eval_examples, ...).
    """

    name = "tap"
    #: the name ``Search`` seeds the random stream with: every ranker draws the same first menu under one seed (so a
    #: ranker's comparison with random-sh is paired where it can be), and runs replay those made before the presets
    stream = "tap-sh"

    def __init__(self, *args, world_model=None, ranker: Ranker = "prior", policy=None, menu: int = 256,
                 plans: float = 0.25, enter: int = 8, rungs: tuple[int, ...] | None = None, beta: float = 1.0,
                 explore: float = 0.125, dense_weight: float = 0.25, adapt: float = 0.0, op_bonus: bool = False,
                 hedge: bool = False, compose: int = 0, compose_hedge: bool = False, early_accept: float = 0.0,
                 lazy_initial: bool = False, fluency_weight: float = 0.0, task_pairs: int = 4,
                 training_data: dict | None = None, max_rounds: int = 1000, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        check_settings(ranker=ranker, menu=menu, plans=plans, enter=enter, beta=beta, explore=explore, adapt=adapt,
                       op_bonus=op_bonus, hedge=hedge, compose=compose, compose_hedge=compose_hedge,
                       early_accept=early_accept, fluency_weight=fluency_weight)
        if ranker == "policy":
            if policy is None:
                raise TapError("the 'policy' ranker needs an imagination-policy checkpoint (configs/policy.yaml).")
            world_model = world_model or policy.world_model
        if ranker in ("gradient", "policy"):
            plans = 0.0  # they score a candidate as the first edit of a plan: single edits only
        if ranker != "random" and world_model is None:
            raise TapError(f"the {ranker!r} ranker needs a world model: pass a checkpoint (plan.py --checkpoint), "
                           "or use the 'random' preset.")
        full = len(self.examples)
        self.rungs = tuple(rungs) if rungs else halving_rungs(full)
        if list(self.rungs) != sorted(set(self.rungs)) or self.rungs[-1] != full or self.rungs[0] < 1:
            raise TapError(f"rungs {self.rungs} must increase strictly from >= 1 and end at eval_examples ({full}).")
        self.wm, self.ranker, self.policy = world_model, ranker, policy
        self.name = RANKER_NAMES[ranker]
        self.menu_size, self.plans, self.enter, self.beta, self.explore = menu, plans, enter, beta, explore
        self.dense_weight, self.fluency_weight = dense_weight, fluency_weight
        self._fluency: dict[str, float] = {}  # chain text -> fluency (scored once)
        self.task_pairs, self.max_rounds = task_pairs, max_rounds
        self.training_data = dict(training_data or {}) if ranker != "random" else {}
        self.rounds: list[dict] = []  # what each round imagined, picked and verified (the "why")
        self.adapt, self.hedge, self.compose, self.compose_hedge = adapt, hedge, compose, compose_hedge
        self._correction = OpCorrection(adapt) if adapt else None
        self.early_accept, self.lazy_initial, self.op_bonus = early_accept, lazy_initial, op_bonus
        self._own: list[float] = []  # the ranker's own uncertainty of the current menu (before the bonus)
        self._skill = RankerSkill(explore) if hedge else None
        self._mix = RankerSkill(explore, arms=("ranked", "composed")) if compose_hedge else None
        self._n_composed = 0  # composed plans at the end of this round's menu
        self._source: dict[int, str] = {}  # this round's entrant (menu index) -> "ranked" | "random" | "composed"
        self._change: list[float] = []  # the ranker's predicted accuracy change of the current menu
        self._at_rung: dict[tuple[str, int], Evaluation] = {}  # (incumbent, n) -> its evaluation on n examples

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

    # ---- 2. imagination ----------------------------------------------------------------------------
    @torch.no_grad()
    def _imagine(self, parent: Chain, menu: list[tuple[tuple[Edit, ...], Chain]]) -> tuple[list[float], list[float]]:
        """Predicted score and uncertainty of every candidate (zeros for ``random``)."""
        if self.ranker == "random":
            return [0.0] * len(menu), [0.0] * len(menu)
        wm = self.wm
        if self.ranker == "prior":
            ops = torch.tensor([e.op_id for edits, _ in menu for e in edits], dtype=torch.long, device=wm.device)
            prior = wm.op_prior(ops).tolist()
            out, i = [], 0
            for edits, _ in menu:
                out.append(sum(prior[i : i + len(edits)]))
                i += len(edits)
            self._change = list(out)
            return out, [0.0] * len(menu)
        if self.ranker in ("gradient", "policy"):
            pairs = task_pair_texts(self.task, self.task_pairs)
            state = wm.observe(wm.encode_chains([parent], self.task.description, pairs))  # batch 1
            actions, scales = wm.embed_edits([edits[0] for edits, _ in menu])  # (K, A), (K, 3): singles only
            if self.ranker == "policy":
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
            score = self._add_fluency(parent, menu, score)
        return score, sigma

    def _add_fluency(self, parent: Chain, menu: list, score: list[float]) -> list[float]:
        """``score + fluency_weight * (fluency(candidate) - fluency(parent))``; a text with no words counts as
        unchanged.
        """
        from tap.chains.fluency import chain_text, fluency

        chains = [parent, *(c for _, c in menu)]
        new = list({chain_text(c): c for c in chains if chain_text(c) not in self._fluency}.values())
        for c, f in zip(new, fluency(self.llm, new) if new else []):
            self._fluency[chain_text(c)] = f
        base = self._fluency[chain_text(parent)]

        def change(c: Chain) -> float:
            f = self._fluency[chain_text(c)]
            return 0.0 if math.isnan(f) or math.isnan(base) else f - base

        return [s + self.fluency_weight * change(c) for s, (_, c) in zip(score, menu)]

    # ---- 3. acquisition ------------------------------------------------------------------------------
    def _by_acquisition(self, score: list[float], sigma: list[float]) -> list[int]:
        """Candidate indices by UCB, ``score + beta * sigma``, highest first (ties: the lower index)."""
        ucb = [m + self.beta * s for m, s in zip(score, sigma)]
        return sorted(range(len(score)), key=lambda i: (-ucb[i], i))

    def _acquire(self, score: list[float], sigma: list[float]) -> list[int]:
        """Indices of ``enter`` entrants: UCB picks first, then an ``explore`` share (or the hedge's) uniformly from
        the rest; with ``compose_hedge``, composed plans take the share of the ranked slots they earned.
        """
        n = min(self.enter, len(score))
        if self.ranker == "random":
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
            picks, chosen = plain[: n - n_random - n_composed], composed[:n_composed]
            rest = plain[len(picks):]
            drawn = self.rng.sample(rest, min(n_random, len(rest)))
            self._source = {**{i: "ranked" for i in picks}, **{i: "composed" for i in chosen},
                            **{i: "random" for i in drawn}}
            return picks + chosen + drawn
        picks, rest = order[: n - n_random], order[n - n_random:]
        drawn = self.rng.sample(rest, n_random)
        self._source = {**{i: "ranked" for i in picks}, **{i: "random" for i in drawn}}
        return picks + drawn

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
                guess = {"predicted": score[i], "uncertainty": sigma[i]} if self.ranker != "random" else {}
                ev = self.evaluate(chain, [*parent_edits, *(e.to_dict() for e in edits)], n=n,
                                   note=f"rung {n}: " + " + ".join(f"{e.scale}.{e.op}" for e in edits), **guess)
                keys[i] = search_key(ev)
                if self.early_accept:
                    record[i] = self.records[-1]  # this evaluation's record: the one an early acceptance marks
                measured[i] = {"rung": n, "accuracy": ev.accuracy, "dense": ev.dense}
                last[i] = (n, ev)
                if level == 0 and i in self._source:
                    self._weigh(self._source[i], paired_gain(ev, self._incumbent_at(parent, n), self.dense_weight))
            if level == len(self.rungs) - 1:
                break
            if self.early_accept and self._race(parent, menu, alive, last, record, measured):
                break
            keep = max(1, math.ceil(len(alive) / 2))
            alive = sorted(alive, key=lambda i: (keys[i], -i), reverse=True)[:keep]
        if self._correction is not None:
            self._adapt_from(parent, menu, last)
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

    # ---- 5. learning online --------------------------------------------------------------------------
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
            if not menu:
                return
            score, sigma = self._rank(parent, menu)
            composed = self._composed(parent, menu, score) if self.compose > 1 else []
            if composed:  # ranked the same way, after the menu
                change, own = self._change, self._own
                more, more_sigma = self._rank(parent, composed)
                self._change, self._own = change + self._change, own + self._own
                menu, score, sigma = menu + composed, score + more, sigma + more_sigma
            self._n_composed = len(composed)
            adapted = {}
            if self._correction is not None and self._correction.observations:
                adapted = {"adapt": self._correction.summary()}  # what this task taught so far, per operation
            hedged = {"hedge": self._skill.summary()} if self._skill is not None else {}  # what set the shares
            if self._mix is not None:
                hedged["compose_hedge"] = self._mix.summary()  # what set the composed plans' share
            picks = self._acquire(score, sigma)
            if self._mix is not None:
                hedged["compose_hedge"]["entrants"] = sum(s == "composed" for s in self._source.values())
            entry = {"round": len(self.rounds), "menu": len(menu), "entrants": len(picks),
                     "plans_in_menu": sum(len(e) > 1 for e, _ in menu), "composed": len(composed),
                     "random_entrants": sum(s == "random" for s in self._source.values()),
                     "planning_seconds": round(time.perf_counter() - t0, 4), **adapted, **hedged}  # menu to acquisition
            self.rounds.append(entry)
            try:
                entry["verified"] = self._halve(parent, parent_edits, menu, picks, score, sigma)
            finally:
                entry["accepted"] = self.best.to_json() != parent.to_json()

    def config(self) -> dict:
        out = super().config()
        for k in ("wm", "rounds", "training_data", "policy"):
            out.pop(k, None)
        return {**out, "rungs": list(self.rungs)}

    def run(self):
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
    """``random-sh``: the same search with the ranker replaced by a uniform choice."""
    return SuccessiveHalvingSearch(*args, ranker="random", **kwargs)


def check_settings(*, ranker: str, menu: int, plans: float, enter: int, beta: float, explore: float, adapt: float,
                   op_bonus: bool, hedge: bool, compose: int, compose_hedge: bool, early_accept: float,
                   fluency_weight: float) -> None:
    """Refuse settings that do not fit together, naming the setting and the fix (before any call is paid)."""
    if ranker not in RANKERS:
        raise TapError(f"unknown ranker {ranker!r}; choose one of {list(RANKERS)}.")
    if menu < 1 or enter < 1 or not 0 <= plans <= 1 or not 0 <= explore <= 1 or beta < 0 or adapt < 0:
        raise TapError(f"invalid search settings: menu ({menu}) and enter ({enter}) must be >= 1, plans ({plans}) and "
                       f"explore ({explore}) in [0, 1], beta ({beta}) and adapt ({adapt}) >= 0.")
    single = {k: v for k, v in (("compose", compose), ("compose_hedge", compose_hedge), ("adapt", adapt),
                                ("op_bonus", op_bonus)) if v}
    if ranker in ("gradient", "policy") and single:
        raise TapError(f"the {ranker!r} ranker scores single edits and predicts no accuracy change, so "
                       f"{', '.join(single)} cannot apply: set " + " ".join(
                           f"{k}={'false' if isinstance(v, bool) else 0}" for k, v in single.items())
                       + " (or start from a preset without them).")
    if adapt and ranker not in PREDICTING:
        raise TapError(f"adapt corrects a ranker's predicted accuracy change; the {ranker!r} ranker predicts none. "
                       f"Set adapt=0, or use a ranker in {list(PREDICTING)}.")
    if op_bonus and not adapt:
        raise TapError("op_bonus reads the online correction's uncertainty per operation: it needs adapt > 0.")
    if hedge and ranker == "random":
        raise TapError("hedge weighs a ranker against uniform draws; the 'random' ranker has none. Set hedge=false.")
    if hedge and enter < 2:
        raise TapError(f"hedge needs enter >= 2 (one ranked and one random entrant a round), got {enter}.")
    if compose < 0 or (compose > 1 and ranker not in PREDICTING and ranker != "random"):
        raise TapError(f"compose ({compose}) must be >= 0, and the {ranker!r} ranker ranks single edits only: "
                       "set compose=0 with it.")
    if compose_hedge and (ranker == "random" or compose < 2 or enter < 3):
        raise TapError(f"compose_hedge weighs composed plans against the ranker's other picks: it needs a ranker "
                       f"other than 'random' (got {ranker!r}), compose >= 2 (got {compose}) and enter >= 3 (got "
                       f"{enter}: a composed, a ranked and a random entrant a round).")
    if not 0 <= early_accept < 1:
        raise TapError(f"early_accept ({early_accept}) is the level of a sign test: in [0, 1) (0: off).")
    if fluency_weight < 0 or (fluency_weight and ranker == "random"):
        raise TapError(f"fluency_weight ({fluency_weight}) re-ranks a ranker's candidates by readability: >= 0, and "
                       "not with the 'random' ranker, whose pick is uniform.")


def collection_cost(training_data: dict, task: Task, mode: str) -> dict:
    """What collecting a world model's training data cost (``training_data``: its checkpoint's data
    settings): chain evaluations on every training task, and on this task (0 when the world model never
    saw it: the transfer case) with the LLM requests they took (generate mode: a reply and a gold-answer
    score per example; score mode: one score per option).
    """
    d = training_data
    tasks = list(d.get("tasks") or [])
    # each trajectory: c_0, then a walk of `horizon` steps of max(1, K) evaluated edits (K sibling edits per step)
    per_task = int(d.get("trajectories", 0)) * (int(d.get("horizon", 0)) * max(int(d.get("siblings") or 0), 1) + 1)
    this = per_task if task.name in tasks else 0
    examples = int(d.get("eval_examples") or 0)
    per_example = 2 if mode == "generate" else max((len(ex.choices) for ex in task.val[:examples]), default=0)
    return {"world_model_tasks": tasks, "task_in_training_data": this > 0, "chain_evals_this_task": this,
            "llm_requests_this_task": this * examples * per_example, "chain_evals_all_tasks": per_task * len(tasks),
            "examples_per_eval": examples}


__all__ = ["RANKERS", "SuccessiveHalvingSearch", "check_settings", "collection_cost", "halving_rungs",
           "imagined_effects", "load_world_model", "planning_cost", "random_sh", "sign_test"]
