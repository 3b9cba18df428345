"""Bridges to other prompt-optimization tools. ``tap.integrations.dspy``: TaP's frozen LLMs, answer judging and
search inside DSPy (``TapLM``, ``TapAdapter``, ``TapMetric``, ``TaPOptimizer``; ``pip install -e '.[dspy]'``).
Nothing here is imported by the rest of the package, so the optional dependencies stay optional.
"""
