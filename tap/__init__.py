"""TaP (Thoughts-as-Planning): optimize an LLM's reasoning chain by planning edits in a latent world model.

The data flow, in package order (a package imports only from those before it): ``tap.llm`` (frozen
LLM backends and the call cache) → ``tap.tasks`` (task sources, splits, metrics) → ``tap.chains``
(three-scale chains, rendering, edits) → ``tap.env`` (evaluate a chain on examples) →
``tap.collection`` (edit trajectories, the triples DataModule) → ``tap.search`` (what every search
shares: budgeted evaluation, records, one result type) → ``tap.models`` / ``tap.losses`` /
``tap.metrics`` (networks, loss terms, metrics) → ``tap.systems`` (the LightningModules) →
``tap.planning`` and ``tap.baselines`` (the searches) → entry points (``tap.cli``, ``tap.collect``,
``tap.pipeline``, ``tap.integrations``; ``train.py``, ``plan.py``). ``tap.errors``, ``tap.paths``, ``tap.machine``
and ``tap.quiet`` serve every layer.
"""

__version__ = "0.1.0"
