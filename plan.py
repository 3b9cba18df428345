"""Plan chain edits with a trained world model under a real-LLM budget.

Not built yet: the planner arrives with the planner issue (#4), after the encoder and world model
(#3). Until then this entry point says so instead of pretending to work.
"""

import sys

if __name__ == "__main__":
    print("plan.py: the differentiable planner is not implemented yet (tracked in issue #4). "
          "Available now: `python -m tap.collect --task bigbench:NAME` to collect chain-edit-response "
          "triples from the frozen LLM.", file=sys.stderr)
    sys.exit(2)
