"""Planning: TaP's search (successive halving over a ranked menu of edits), its presets, and the rankers
(the operation prior, the world model, the gradient planner, an imagination policy).

    from tap.planning import Planner
    planner = Planner.from_checkpoint("checkpoints/world_model")
    result = planner.optimize("ii:first_word_letter", budget_calls=512, seed=0)   # preset "default"
    print(result.final_chain.describe(), result.test, result.costs)
"""

from tap.planning.gradient import GradientConfig, GradientPlanner
from tap.planning.planner import PlanConfig, Planner
from tap.planning.presets import PRESETS, SEARCH_DEFAULTS, resolve

__all__ = ["PRESETS", "SEARCH_DEFAULTS", "GradientConfig", "GradientPlanner", "PlanConfig", "Planner", "resolve"]
