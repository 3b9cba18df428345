"""Optimise a task's reasoning chain with a trained world model under a budget of real LLM evaluations.

    python plan.py --task ii:sentiment --checkpoint checkpoints/world_model --budget 60 --seed 0

Prints the initial and final chain, one line per verified edit (predicted and measured reward, budget
spent), and both chains' accuracy on the task's held-out test split; writes plan.json, plan.md,
final_chain.json, final_prompt.txt, the verified transitions and a TensorBoard run to --out.
"""

import sys

from tap.quiet import quiet

quiet()  # before the libraries load: their banners and per-file bars stay out of the output

from tap.planning.cli import main  # noqa: E402 - after quiet()

if __name__ == "__main__":
    sys.exit(main())
