"""TaP (Thoughts-as-Planning): optimize an LLM's reasoning chain by planning edits in a latent world model.

The data flow, in package order: ``tap.llm`` (frozen LLM backends and the call cache) → ``tap.tasks``
(task sources, splits, metrics) → ``tap.chains`` (three-scale chains, rendering, edits) →
``tap.env`` (evaluate a chain on examples) → ``tap.collection`` (edit trajectories, the triples
DataModule).
"""

__version__ = "0.1.0"
