"""Three-scale reasoning chains, their rendering to prompts, edit operators and payload libraries."""

from tap.chains.chain import AnswerFormat, Chain, Demo
from tap.chains.edits import OP_IDS, OPS, SCALES, Edit, EditSpace, apply_edit, replay
from tap.chains.library import Libraries

__all__ = ["AnswerFormat", "Chain", "Demo", "Edit", "EditSpace", "Libraries", "OPS", "OP_IDS", "SCALES",
           "apply_edit", "replay"]
