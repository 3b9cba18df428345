"""What a planning run returns: the one result type every search shares (``tap.search``), under the names
the planner's API has used (``PlanResult``, ``StepRecord``).
"""

from tap.search import SearchRecord as StepRecord
from tap.search import SearchResult as PlanResult

__all__ = ["PlanResult", "StepRecord"]
