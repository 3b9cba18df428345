"""LightningModules, one per file, named after what they learn: the contrastive encoder and the world model."""

from tap.systems.encoder import ContrastiveEncoder
from tap.systems.world_model import WorldModel

__all__ = ["ContrastiveEncoder", "WorldModel"]
