"""Three-scale reasoning chains, their rendering to prompts, edit operators and payload libraries."""

from tap.chains.chain import AnswerFormat, Chain, Demo
from tap.chains.edits import OP_IDS, OPS, SCALES, Edit, EditSpace, apply_edit, replay
from tap.chains.library import GENERIC_INSTRUCTION, Libraries


def initial_chain(task_instruction: str) -> Chain:
    """The chain a search starts from: the task's own instruction, or for a task without one the generic
    instruction ``GENERIC_INSTRUCTION`` (the same for every such task); nothing else.
    """
    return Chain(task_instruction.strip() or GENERIC_INSTRUCTION)


def edit_space(task, libraries: Libraries | None = None, max_demos: int = 8, max_steps: int = 8,
               induced: tuple[str, ...] = ()) -> EditSpace:
    """The edit space of a task: libraries plus the task's instruction (the generic one when it has none)
    and instructions ``induced`` for it (``tap.chains.induce``); demonstrations from train only.
    """
    demos = [Demo(ex.uid, ex.input, ex.answer) for ex in task.train]
    own = task.description.strip() or GENERIC_INSTRUCTION
    return EditSpace((libraries or Libraries()).for_task(own, tuple(induced)), demos, max_demos, max_steps)

__all__ = ["GENERIC_INSTRUCTION", "AnswerFormat", "Chain", "Demo", "Edit", "EditSpace", "Libraries", "OPS",
           "OP_IDS", "SCALES", "apply_edit", "edit_space", "initial_chain", "replay"]
