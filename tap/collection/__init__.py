"""Edit trajectories from a behaviour policy on the real frozen LLM, stored as triples, and the
LightningDataModule that serves them (the top-level ``data/`` folder holds what is collected).
"""

from tap.collection.behaviour import BehaviourPolicy
from tap.collection.trajectories import CollectionConfig, collect, dataset_dir

__all__ = ["BehaviourPolicy", "CollectionConfig", "collect", "dataset_dir"]
