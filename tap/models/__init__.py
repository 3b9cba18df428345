"""Plain networks (``nn.Module``): text backbones, the chain encoder, edit embeddings, the task encoder,
world models, heads.

The LightningModules that train them live in ``tap.systems``.
"""

from tap.models.actions import EditEmbedder
from tap.models.encoder import LATENT_KEYS, LEVELS, ChainEncoderNet
from tap.models.reference import DemoWorldModel, FlatRSSM
from tap.models.task import TaskEncoder
from tap.models.text import HashText, MiniLMText, build_backbone
from tap.models.world_model import RSSM, HierarchicalRSSM, State, WorldModelNet

WORLD_MODELS: dict[str, type[WorldModelNet]] = {
    "hierarchical": HierarchicalRSSM, "flat": FlatRSSM, "demo": DemoWorldModel,
}

__all__ = ["EditEmbedder", "LATENT_KEYS", "LEVELS", "ChainEncoderNet", "DemoWorldModel", "FlatRSSM", "HashText",
           "MiniLMText", "TaskEncoder", "build_backbone", "RSSM", "HierarchicalRSSM", "State", "WorldModelNet",
           "WORLD_MODELS"]
