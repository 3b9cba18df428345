"""Small building blocks shared by the networks."""

from __future__ import annotations

from torch import nn


def mlp(inp: int, hidden: int, out: int, layers: int = 2) -> nn.Sequential:
    """``layers`` Linear layers with LayerNorm + SiLU between them."""
    dims = [inp] + [hidden] * (layers - 1) + [out]
    mods: list[nn.Module] = []
    for i in range(len(dims) - 1):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            mods += [nn.LayerNorm(dims[i + 1]), nn.SiLU()]
    return nn.Sequential(*mods)
