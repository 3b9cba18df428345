"""Three-scale reasoning chains, their rendering to prompts, edit operators and payload libraries."""

from tap.chains.chain import AnswerFormat, Chain, Demo
from tap.chains.edits import OP_IDS, OPS, SCALES, Edit, EditSpace, apply_edit, replay
from tap.chains.library import Libraries


def initial_chain(task_instruction: str) -> Chain:
    """The chain a search starts from: the task's own instruction (or a generic one), nothing else."""
    from tap.chains.library import INSTRUCTIONS

    return Chain(task_instruction.strip() or INSTRUCTIONS[0])


def edit_space(task, libraries: Libraries | None = None, max_demos: int = 8, max_steps: int = 8) -> EditSpace:
    """The edit space of a task: libraries plus the task's instruction, demonstrations from train only."""
    demos = [Demo(ex.uid, ex.input, ex.answer) for ex in task.train]
    return EditSpace((libraries or Libraries()).for_task(task.description), demos, max_demos, max_steps)

__all__ = ["AnswerFormat", "Chain", "Demo", "Edit", "EditSpace", "Libraries", "OPS", "OP_IDS", "SCALES",
           "apply_edit", "edit_space", "initial_chain", "replay"]
