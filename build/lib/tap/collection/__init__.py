"""Edit trajectories from a behaviour policy on the real frozen LLM, stored as triples, and the
LightningDataModule that serves them (the top-level ``data/`` folder holds what is collected).
"""

from tap.collection.collect import CollectionConfig, collect, dataset_dir
from tap.collection.policy import BehaviourPolicy

__all__ = ["BehaviourPolicy", "CollectionConfig", "collect", "dataset_dir"]
