"""Keep third-party noise a user cannot act on out of TaP's output (TaP's own warnings stay).

Each entry point calls ``quiet()`` once before it imports Lightning or torch's heavy modules. What it hides:
Lightning's banners and tips (the accelerator lines, the litlogger tip, "Found N module(s) in eval mode", the
DataLoader worker advice for in-memory datasets), the Hugging Face libraries' per-file progress bars (weights
loading, dataset splits), torchmetrics' note that a rank metric keeps its inputs in a
buffer (TaP's are small), and deprecation notices raised inside libraries (torch's pytree, jsonargparse's).
``TAP_VERBOSE=1`` shows everything.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

#: warning messages (regular expressions, matched at the start) that come from libraries, not from the user's input
_MESSAGES = (
    r"Metric `\w+` will save all targets and predictions in the buffer",
    r"Found \d+ module\(s\) in eval mode",
    r"The '\w+_dataloader' does not have many workers",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r".*`torch.utils._pytree.\w+` is deprecated",
    r"You are using `torch.load` with `weights_only=False`",
)
#: Lightning's INFO lines that describe the machine or advertise, not the run
_LIGHTNING_LINES = ("GPU available", "TPU available", "HPU available", "💡 Tip", "LOCAL_RANK", "Seed set to")


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(line in message for line in _LIGHTNING_LINES)


def quiet() -> None:
    """Silence the noise listed in the module docstring (idempotent; nothing with ``TAP_VERBOSE=1``)."""
    if os.environ.get("TAP_VERBOSE") == "1":
        return
    for message in _MESSAGES:
        warnings.filterwarnings("ignore", message=message)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(torch|lightning|pytorch_lightning|"
                                r"jsonargparse|transformers|torchmetrics|peft|datasets)(\.|$)")
    warnings.filterwarnings("ignore", message=r".*JsonargparseDeprecationWarning")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in logger.filters):
            logger.addFilter(_DropLines())
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizers fork warning
    # the per-tensor "Loading weights" and per-split "Generating train split" bars (TaP shows one bar per stage)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules:  # imported before: the variable above came too late for it
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()


__all__ = ["quiet"]
