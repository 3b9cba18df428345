"""TensorBoard extras: scatter plots as images and latents in the embedding projector."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger


def _writer(module: L.LightningModule):
    logger = module.logger
    if isinstance(logger, TensorBoardLogger) and module.trainer is not None and not module.trainer.sanity_checking:
        return logger.experiment
    return None


def log_scatter(module: L.LightningModule, tag: str, pred: torch.Tensor, real: torch.Tensor,
                xlabel: str = "real", ylabel: str = "predicted") -> None:
    """A predicted-vs-real scatter (with the diagonal) as an image, when logging to TensorBoard."""
    writer = _writer(module)
    if writer is None or pred.numel() == 0:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    x, y = real.detach().cpu().float().numpy(), pred.detach().cpu().float().numpy()
    ax.scatter(x, y, s=6, alpha=0.5)
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(tag)
    fig.tight_layout()
    writer.add_figure(tag, fig, global_step=module.global_step)
    plt.close(fig)


def log_embedding(module: L.LightningModule, tag: str, latents: torch.Tensor, metadata: list[list[str]],
                  header: list[str]) -> None:
    """Latents (N, D) with per-row metadata columns into the embedding projector."""
    writer = _writer(module)
    if writer is None or latents.shape[0] < 2:
        return
    writer.add_embedding(latents.detach().cpu().float(), metadata=metadata, metadata_header=header,
                         global_step=module.global_step, tag=tag)


class LatentProjector:
    """Chain latents and their metadata gathered over an evaluation epoch, for the embedding projector.

    The test epoch's are written when it ends; the last validation epoch's when fitting ends (one
    projector entry per fit, not one per epoch).

    Args:
        header: names of the metadata columns.
    """

    def __init__(self, header: list[str]) -> None:
        self.header = header
        self.current: list[tuple[torch.Tensor, list[list[str]]]] = []
        self.last_val: list[tuple[torch.Tensor, list[list[str]]]] = []

    def add(self, latents: torch.Tensor, metadata: list[list[str]]) -> None:
        """Latents (N, D) with N metadata rows."""
        self.current.append((latents.detach().cpu(), metadata))

    def end_validation(self) -> None:
        self.last_val, self.current = self.current, []

    def end_test(self, module: L.LightningModule) -> None:
        self._write(module, "test/chain_latents", self.current)
        self.current = []

    def end_fit(self, module: L.LightningModule) -> None:
        self._write(module, "val/chain_latents", self.last_val)

    def _write(self, module: L.LightningModule, tag: str, items: list) -> None:
        if items:
            log_embedding(module, tag, torch.cat([p[0] for p in items]), [m for p in items for m in p[1]], self.header)
