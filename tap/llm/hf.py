"""The default backend: a causal LM run by ``transformers`` on this machine (CPU, or CUDA when present).

Batched greedy generation with left padding and a KV cache, and continuation scoring; both apply the
LM head only at the positions that are needed (the last one when generating, the continuation's when
scoring), which DESIGN.md measured ~1.7x faster than full logits for SmolLM2; essential for 262k vocabularies.
Batches are bucketed by length and bounded by ``max_batch_tokens`` so peak memory stays predictable.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from tap.errors import BackendError
from tap.llm.base import LLM, GenerationSettings, Score
from tap.llm.prompt import plain_prompt
from tap.llm.provision import OFFLINE_MODELS, provision_offline
from tap.machine import cpu_info, effective_cpu, isa_cap

#: linear layers the ``int8`` path quantizes: attention projections and the MLP's gate/up. The MLP's
#: down projection (its inputs carry outlier activations that per-tensor dynamic quantization of
#: activations destroys) and the LM head stay fp32: quantizing them too took SmolLM2's accuracy on a
#: plural task from 0.71 to 0.42 (docs/studies.md, "int8 on CPUs without bf16").
INT8_LAYERS = r"(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up)_proj)$"


_SAID: set = set()  # what ``auto`` picked, said once per process


def auto_dtype(device: str) -> tuple[torch.dtype, str]:
    """What ``dtype: auto`` runs the frozen LLM in on ``device``, and why."""
    if device.startswith("cuda"):
        return torch.bfloat16, "CUDA"
    cpu, cap = effective_cpu(cpu_info()), isa_cap()
    if cpu.native_bf16:
        return torch.bfloat16, f"{cpu.kind} CPU: bf16 in hardware, 2.0-3.3x faster than fp32"
    where = f"{cpu.kind} CPU" + (f" (kernels capped: {cap})" if cap else "")
    return torch.float32, (f"{where} without bf16 in hardware (emulated bf16 is ~6x slower than fp32); "
                           "dtype int8 is faster but answers differently (docs/timings.md)")


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto``: bf16 on CUDA and on CPUs with native bf16 (2.0-3.3x faster here: docs/timings.md), else fp32.
    ``int8`` computes in fp32 around its int8 layers (``quantize_int8``), so it resolves to fp32 here.
    """
    if dtype == "auto":
        picked, why = auto_dtype(device)
        if (picked, why) not in _SAID:
            _SAID.add((picked, why))
            print(f"[tap] dtype auto -> {str(picked).removeprefix('torch.')}: {why}", file=sys.stderr)
        return picked
    try:
        return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32,
                "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
                "int8": torch.float32}[dtype]
    except KeyError:
        raise BackendError(f"unknown dtype {dtype!r}; use auto, bf16, fp32, fp16 or int8.") from None


def int8_kernel() -> str:
    """Which int8 kernels FBGEMM runs here: ``vnni`` (AVX-512 VNNI) or ``avx2``. Their sums differ (the AVX2
    kernels saturate 16-bit pair sums), so int8 outputs depend on it and it is part of the model's name.
    ``FBGEMM_ENABLE_INSTRUCTIONS`` (AVX2, AVX512, ...) caps the kernels below what the CPU has.
    """
    forced = os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS", "").upper()
    if forced and "E1" not in forced and "VNNI" not in forced:
        return "avx2"  # capped at kernels without VNNI
    return "vnni" if "avx512_vnni" in cpu_info().features else "avx2"


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization (FBGEMM, per-channel weights) of the ``INT8_LAYERS`` linear layers, in
    place: int8 matmuls where CPUs without bf16 have no fast low-precision path. The outputs differ from
    fp32's, so it is another frozen model (its own name, ``<model>@int8-<int8_kernel()>``, in the cache
    and results).
    """
    import re
    import warnings

    from torch.ao import quantization as Q

    names = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and re.search(INT8_LAYERS, n)}
    if not names:
        raise BackendError("int8: the model has no attention / MLP gate-up linear layers to quantize "
                           f"(looked for {INT8_LAYERS!r}); use dtype fp32.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's notice that its eager quantization moves to torchao
        return Q.quantize_dynamic(model, {n: Q.per_channel_dynamic_qconfig for n in names}, dtype=torch.qint8,
                                  inplace=True)


class TransformersLLM(LLM):
    """A frozen causal LM from ``transformers``.

    Args:
        model: ``"smollm2"`` (the offline default), a local directory, a ``.gguf`` file, or a hub id.
        dtype: ``auto`` | ``bf16`` | ``fp32`` | ``fp16`` | ``int8`` (CPU: ``quantize_int8`` on fp32 weights).
        device: ``auto`` (CUDA when present) or a torch device string.
        batch_size: most sequences in one forward pass.
        max_batch_tokens: most (padded) tokens in one forward pass; bounds peak memory.
        threads: torch intra-op threads on CPU (default: all cores).
    """

    def __init__(self, model: str = "smollm2", dtype: str = "auto", device: str = "auto", batch_size: int = 16,
                 max_batch_tokens: int = 16384, threads: int | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.dtype = resolve_dtype(dtype, self.device)
        self.int8 = dtype == "int8"
        if self.int8 and self.device != "cpu":
            raise BackendError(f"dtype int8 runs on CPU only (FBGEMM kernels), not on {self.device}; use bf16 there.")
        if self.device == "cpu":
            # $TAP_THREADS caps the threads (e.g. 1 for a background job that must leave a core free)
            torch.set_num_threads(threads or int(os.environ.get("TAP_THREADS") or 0) or os.cpu_count() or 1)
        kwargs: dict = {}
        if model in OFFLINE_MODELS:
            path, ident = str(provision_offline(model)), OFFLINE_MODELS[model].slug
        elif model.endswith(".gguf"):
            p = Path(model)
            if not p.exists():
                raise BackendError(f"GGUF file {model} does not exist.")
            path, ident, kwargs = str(p.parent), p.stem, {"gguf_file": p.name}
        else:
            path, ident = model, Path(model).name if Path(model).exists() else model

        def fail(err: Exception) -> BackendError:
            return BackendError(
                f"cannot load model {model!r}: {err}\nFix: use 'smollm2' or 'qwen2.5-coder-0.5b' (offline), a local "
                "directory with config.json and weights, or a hub id on a machine that can reach the hub."
            )

        try:
            tok = AutoTokenizer.from_pretrained(path, **kwargs)
        except (OSError, ValueError, KeyError) as err:
            raise fail(err) from err

        def load_weights() -> torch.nn.Module:
            try:
                net = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype, **kwargs)
            except (OSError, ValueError, KeyError) as err:
                raise fail(err) from err
            return quantize_int8(net) if self.int8 else net

        # the weights load on the first real call: a fully cached run never pays for them
        self._loader = load_weights
        precision = f"int8-{int8_kernel()}" if self.int8 else str(self.dtype).removeprefix("torch.")
        self._setup(None, tok, f"{ident}@{precision}", batch_size, max_batch_tokens)

    @classmethod
    def from_objects(cls, model: torch.nn.Module, tokenizer, name: str, batch_size: int = 16,
                     max_batch_tokens: int = 16384) -> TransformersLLM:
        """Wrap an already-built model and tokenizer (tests use a tiny random model this way)."""
        self = cls.__new__(cls)
        self.device = str(next(model.parameters()).device)
        self.dtype = next(model.parameters()).dtype
        self.int8 = False
        self._setup(model, tokenizer, name, batch_size, max_batch_tokens)
        return self

    def _setup(self, model, tokenizer, name: str, batch_size: int, max_batch_tokens: int) -> None:
        self._model = model
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.share_prefix = True  # a batch's common prefix (the chain) is computed once, for scores and replies
        self.min_shared_tokens = 8
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        stops = {tokenizer.eos_token_id}
        for tok in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>"):
            tid = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
            if tid is not None:
                stops.add(tid)
        self.stop_ids = torch.tensor(sorted(s for s in stops if s is not None))
        if model is not None:
            self._attach(model)

    def _attach(self, model: torch.nn.Module) -> None:
        self._model = model.to(self.device).eval()
        self.body = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
        self.head = model.get_output_embeddings()  # applied only where logits are needed
        # transformers 5.x renamed the KV-cache argument; accept both
        params = inspect.signature(self.body.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    @property
    def model(self) -> torch.nn.Module:
        """The network, loaded on first use."""
        if self._model is None:
            self._attach(self._loader())
        return self._model

    # --- prompts -----------------------------------------------------------------------------
    def format_chat(self, messages: list[dict[str, str]]) -> str:
        if self.has_chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return plain_prompt(messages)

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        # chat templates already hold any special tokens; plain prompts get the tokenizer's own (BOS)
        return self.tokenizer(list(texts), add_special_tokens=not self.has_chat_template).input_ids

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped into length-sorted batches within ``batch_size`` and ``max_batch_tokens``."""
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        batches, cur = [], []
        for i in order:
            width = lengths[cur[0]] if cur else lengths[i]
            if cur and (len(cur) >= self.batch_size or (len(cur) + 1) * width > self.max_batch_tokens):
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
        return batches

    # --- reading -----------------------------------------------------------------------------
    @torch.inference_mode()
    def prompt_states(self, prompts: Sequence[str]) -> torch.Tensor:
        """(N, D) float32: each prompt's final-layer hidden states (after the last norm) mean-pooled over its
        tokens: how the model itself reads the text, with nothing generated or scored. One forward pass per
        length-sorted batch; padding is masked out, so a prompt's vector does not depend on its batch.
        """
        self.model  # noqa: B018 - loads the weights on first use
        ids = self._encode(prompts)
        if any(not x for x in ids):
            raise BackendError("prompt_states() got an empty prompt: there is nothing to read. Give every prompt "
                               "at least one token.")
        out = torch.zeros(len(prompts), self.body.config.hidden_size)
        for batch in self._batches([len(x) for x in ids]):
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)  # (B, T)
            mask = torch.zeros((len(batch), width), dtype=torch.long)  # right padded
            for r, i in enumerate(batch):
                input_ids[r, : len(ids[i])] = torch.tensor(ids[i])
                mask[r, : len(ids[i])] = 1
            hidden = self.body(input_ids=input_ids.to(self.device),
                               attention_mask=mask.to(self.device)).last_hidden_state.float().cpu()  # (B, T, D)
            pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)  # (B, D)
            out[torch.tensor(batch)] = pooled
        return out

    # --- generation --------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        ids = self._encode(prompts)
        out: list[str] = [""] * len(prompts)
        for batch in self._batches([len(x) + settings.max_new_tokens for x in ids]):
            for i, text in zip(batch, self._generate_batch([ids[i] for i in batch], settings)):
                out[i] = text
        return out

    def _generate_batch(self, ids: list[list[int]], settings: GenerationSettings) -> list[str]:
        from transformers import DynamicCache

        self.model  # noqa: B018 - loads the weights on first use

        n = len(ids)
        pad = self.tokenizer.pad_token_id
        # the chain every prompt starts with is prefilled once; its KV cache is repeated per row
        shared = self._shared_prefix(ids, min(len(x) for x in ids) - 1)
        rest = [x[shared:] for x in ids]
        width = max(len(x) for x in rest)
        input_ids = torch.full((n, width), pad, dtype=torch.long)  # (B, T - P), left padded
        mask = torch.zeros((n, shared + width), dtype=torch.long)  # prefix | padding | prompt rest
        mask[:, :shared] = 1
        for r, x in enumerate(rest):
            input_ids[r, width - len(x) :] = torch.tensor(x)
            mask[r, shared + width - len(x) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]  # (B, T - P)
        cache = DynamicCache()
        if shared:
            cache = self._prefix_cache(ids[0][:shared], n)
        new_tokens = torch.empty((n, 0), dtype=torch.long, device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        stop_ids = self.stop_ids.to(self.device)
        step_ids, step_pos = input_ids, positions
        for _ in range(settings.max_new_tokens):
            hidden = self.body(input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                               use_cache=True, **{self._cache_kw: cache}).last_hidden_state  # (B, t, D)
            logits = self.head(hidden[:, -1])  # (B, V): the LM head at the last position only
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            new_tokens = torch.cat([new_tokens, nxt[:, None]], dim=1)
            done |= torch.isin(nxt, stop_ids)
            if settings.stop:
                for r in (~done).nonzero().flatten().tolist():
                    text = self.tokenizer.decode(new_tokens[r], skip_special_tokens=True)
                    if any(s in text for s in settings.stop):
                        done[r] = True
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=self.device)], dim=1)
            step_pos = step_pos[:, -1:] + 1
            step_ids = nxt[:, None]
        texts = []
        for r in range(n):
            toks = new_tokens[r].tolist()
            cut = next((k for k, t in enumerate(toks) if t in set(stop_ids.tolist())), len(toks))
            text = self.tokenizer.decode(toks[:cut], skip_special_tokens=True)
            for s in settings.stop:
                text = text.split(s)[0]
            texts.append(text.strip())
        return texts

    # --- scoring -----------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        if len(prompts) != len(continuations):
            raise BackendError(f"score() got {len(prompts)} prompts but {len(continuations)} continuations.")
        p_ids = self._encode(prompts)
        joint = self._encode([p + c for p, c in zip(prompts, continuations)])
        alone = self.tokenizer(list(continuations), add_special_tokens=False).input_ids
        # score the continuation as the model would write it after the prompt: split the joint
        # tokenization at the prompt's end when it agrees with the prompt's own tokens
        c_ids = [j[len(p):] if j[: len(p)] == p and len(j) > len(p) else a for p, j, a in zip(p_ids, joint, alone)]
        if any(not p for p in p_ids):
            raise BackendError("score() got an empty prompt: the first continuation token has nothing to be "
                               "predicted from. Give every continuation a prompt.")
        out: list[Score] = [Score(0.0, 0)] * len(prompts)
        for batch in self._batches([len(p_ids[i]) + len(c_ids[i]) for i in range(len(prompts))]):
            for i, s in zip(batch, self._score_batch([p_ids[i] for i in batch], [c_ids[i] for i in batch])):
                out[i] = s
        return out

    def _shared_prefix(self, seqs: list[list[int]], limit: int) -> int:
        """Tokens every sequence of a batch starts with (at most ``limit``), or 0 when sharing is off, the
        batch has one sequence, or the shared part is too short to be worth a second forward pass.
        """
        if not self.share_prefix or len(seqs) < 2:
            return 0
        n = 0
        for column in zip(*seqs):
            if n >= limit or any(t != column[0] for t in column):
                break
            n += 1
        return n if n >= self.min_shared_tokens else 0

    def _prefix_cache(self, prefix: list[int], rows: int):
        """The KV cache of ``prefix`` (one forward pass, batch 1), repeated for ``rows`` rows."""
        out = self.body(input_ids=torch.tensor([prefix], device=self.device), use_cache=True)
        cache = out.get("cache", None) or out.get("past_key_values")  # the name changed in transformers 5
        cache.batch_repeat_interleave(rows)
        return cache

    def _suffix_hidden(self, input_ids: torch.Tensor, mask: torch.Tensor, shared: int) -> torch.Tensor:
        """Hidden states of positions ``shared..`` of a right-padded batch whose first ``shared`` tokens are
        the same in every row: one forward pass over them (batch 1), its KV cache repeated per row.
        """
        n = input_ids.shape[0]
        dev = self.device
        cache = self._prefix_cache(input_ids[0, :shared].tolist(), n)
        rest = input_ids[:, shared:]  # (B, T - P)
        positions = torch.arange(shared, input_ids.shape[1]).unsqueeze(0).expand(n, -1)
        out = self.body(input_ids=rest.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev),
                        use_cache=True, **{self._cache_kw: cache})
        return out.last_hidden_state

    def _score_batch(self, p_ids: list[list[int]], c_ids: list[list[int]]) -> list[Score]:
        self.model  # noqa: B018 - loads the weights on first use
        seqs = [p + c for p, c in zip(p_ids, c_ids)]
        n, width = len(seqs), max(len(s) for s in seqs)
        input_ids = torch.full((n, width), self.tokenizer.pad_token_id, dtype=torch.long)  # (B, T), right padded
        mask = torch.zeros((n, width), dtype=torch.long)
        rows, cols, targets, owner = [], [], [], []
        for r, (p, c) in enumerate(zip(p_ids, c_ids)):
            input_ids[r, : len(p) + len(c)] = torch.tensor(p + c)
            mask[r, : len(p) + len(c)] = 1
            for k, tok in enumerate(c):  # the token at len(p)+k is predicted at position len(p)+k-1
                rows.append(r)
                cols.append(len(p) + k - 1)
                targets.append(tok)
                owner.append(r)
        if not targets:  # every continuation is empty: log-probability 0
            return [Score(0.0, 0) for _ in range(n)]
        shared = self._shared_prefix(seqs, min(len(p) for p in p_ids) - 1)
        if shared:  # the chain's tokens once, then every example's rest on top of that KV cache
            hidden = self._suffix_hidden(input_ids, mask, shared)  # (B, T - P, D)
            cols = [c - shared for c in cols]
        else:
            hidden = self.body(input_ids=input_ids.to(self.device),
                               attention_mask=mask.to(self.device)).last_hidden_state  # (B, T, D)
        picked = hidden[torch.tensor(rows), torch.tensor(cols)]  # (N, D): only the scored positions
        logp = torch.log_softmax(self.head(picked).float(), dim=-1)  # (N, V)
        tok_lp = logp[torch.arange(len(targets)), torch.tensor(targets, device=logp.device)].cpu()
        sums = torch.zeros(n).index_add_(0, torch.tensor(owner), tok_lp)
        return [Score(float(sums[r]), len(c_ids[r])) for r in range(n)]
