"""Planning: TaP's successive-halving search (the default), the gradient planner with budgeted
verify-top-k and Dyna refinement, and the result of a run. The imagination policy that can guide them
is a LightningModule (``tap.systems.ImaginationPolicy``).

    from tap.planning import Planner
    planner = Planner.from_checkpoint("checkpoints/world_model")
    result = planner.optimize("ii:first_word_letter", budget_calls=512, seed=0)   # method="prior-sh"
    print(result.final_chain.describe(), result.test, result.costs)
"""

from tap.planning.gradient import GradientConfig, GradientPlanner
from tap.planning.planner import METHODS, SH_METHODS, PlanConfig, Planner
from tap.planning.result import PlanResult, StepRecord

__all__ = ["GradientConfig", "GradientPlanner", "METHODS", "PlanConfig", "PlanResult", "Planner", "SH_METHODS",
           "StepRecord"]
