"""Planning: the gradient planner, budgeted real verification with Dyna refinement,
and the result of a run. The imagination policy that can guide it is a LightningModule
(``tap.systems.ImaginationPolicy``).

    from tap.planning import Planner
    result = Planner.from_checkpoint("checkpoints/world_model").optimize("bigbench:NAME", budget=60, seed=0)
    print(result.final_chain.describe(), result.test, result.costs)
"""

from tap.planning.gradient import GradientConfig, GradientPlanner
from tap.planning.planner import METHODS, PlanConfig, Planner
from tap.planning.result import PlanResult, StepRecord

__all__ = ["GradientConfig", "GradientPlanner", "METHODS", "PlanConfig", "PlanResult", "Planner", "StepRecord"]
