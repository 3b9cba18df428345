"""LightningModules, one per file, named after what they learn: the contrastive encoder, the world model
and the imagination policy.
"""

from tap.systems.encoder import ContrastiveEncoder
from tap.systems.imagination import ImaginationPolicy
from tap.systems.world_model import WorldModel

__all__ = ["ContrastiveEncoder", "ImaginationPolicy", "WorldModel"]
