"""Shared fixtures, all built in code: no network, no model hub, no writes to ``~/.cache/tap``."""

from __future__ import annotations

import os

import pytest

# nothing in the fast suite may reach the network; set before transformers / datasets are imported
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.helpers import arithmetic_task, make_tiny_model, make_tokenizer, true_false_task  # noqa: E402


@pytest.fixture(autouse=True)
def tap_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own ``TAP_CACHE`` (and HF datasets cache) in a temporary folder."""
    root = tmp_path_factory.mktemp("tap_cache")
    monkeypatch.setenv("TAP_CACHE", str(root))
    try:
        import datasets.config
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass
    else:
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", root / "hf_datasets")
    return root


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A char-level ``PreTrainedTokenizerFast`` (printable ASCII + ``<pad>``, ``<|im_start|>``,
    ``<|im_end|>``, ``<unk>``) with eos ``<|im_end|>``, pad ``<pad>`` and a ChatML chat template."""
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    """A randomly initialised 2-layer ``LlamaForCausalLM`` (hidden 32, seed 0), fp32, eval mode."""
    return make_tiny_model(len(tiny_tokenizer), seed=0)


@pytest.fixture(scope="session")
def tiny_llm(tiny_model, tiny_tokenizer):
    """``TransformersLLM`` over the tiny random Llama and the tiny tokenizer (name ``tiny-llama``)."""
    import torch

    from tap.llm.hf import TransformersLLM

    torch.set_num_threads(1)  # the tiny model gains nothing from threads; leave cores to others
    return TransformersLLM.from_objects(tiny_model, tiny_tokenizer, name="tiny-llama")


@pytest.fixture(scope="session")
def tiny_task():
    """40 exact-match additions ("What is 3 + 4?" -> "7"), seed 0. Shared: do not mutate."""
    return arithmetic_task(40)


@pytest.fixture(scope="session")
def tiny_mc_task():
    """40 multiple-choice examples with choices ("True", "False") and scores, seed 0. Shared: do not mutate."""
    return true_false_task(40)


@pytest.fixture
def synthetic_data(tmp_path, monkeypatch):
    """CLI overrides for the triples DataModule on synthetic triples (see ``synthetic_overrides``)."""
    from tests.helpers import synthetic_overrides

    return synthetic_overrides(tmp_path, monkeypatch)
