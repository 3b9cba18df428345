"""Test helpers shared by several test modules (fake LLMs, tokenizer and task builders).

Kept out of ``conftest.py`` so that tests and subprocesses can import them (``from tests.helpers
import ...``).
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Sequence

from tap.llm.base import LLM, GenerationSettings, Score
from tap.tasks.schema import Example, Task

SPECIAL_TOKENS = ("<pad>", "<|im_start|>", "<|im_end|>", "<unk>")
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer(chat_template: str | None = CHATML_TEMPLATE):
    """A char-level fast tokenizer over printable ASCII plus ChatML special tokens, built in code.

    Every printable ASCII character is one token (so token counts equal character counts) and
    decoding concatenates tokens, so ``decode(encode(text)) == text`` for ASCII text.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(dict.fromkeys(string.printable))
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    kwargs = {"chat_template": chat_template} if chat_template else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
        **kwargs,
    )


def make_tiny_model(vocab_size: int, seed: int = 0):
    """A randomly initialised 2-layer Llama (hidden 32, 2 heads), fp32, eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        # a wide init makes the random model's greedy output depend on the prompt (with the default
        # 0.02 every prompt gives the same reply, which would make batching tests vacuous)
        initializer_range=0.3,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    return model.eval()


def arithmetic_task(n: int = 40, name: str = "tiny-arith", seed: int = 0) -> Task:
    """``n`` exact-match additions "What is a + b?" -> "a+b" (distinct inputs for n <= 77)."""
    examples = []
    for uid in range(n):
        a, b = uid % 7 + 1, (3 * uid) % 11
        examples.append(Example(uid, f"What is {a} + {b}?", (str(a + b),)))
    return Task(name, examples, "exact_match", description="Add the two numbers.", seed=seed)


def true_false_task(n: int = 40, name: str = "tiny-tf", seed: int = 0) -> Task:
    """``n`` multiple-choice examples "Is a + b = c?" with choices True/False (about half true)."""
    examples = []
    for uid in range(n):
        a, b = uid + 1, uid % 3 + 2  # every input differs
        claimed = a + b + (0 if uid % 2 == 0 else 1)
        truth = claimed == a + b
        scores = (1.0, 0.0) if truth else (0.0, 1.0)
        examples.append(Example(uid, f"Is {a} + {b} = {claimed}?", (str(truth),), ("True", "False"), scores))
    return Task(name, examples, "multiple_choice", description="Say whether the sum is right.", seed=seed)


def fake_reply(prompt: str) -> str:
    """The deterministic 'generation' of the fake LLMs."""
    return f"reply to {prompt[::-1]}"


def fake_logprob(prompt: str, continuation: str) -> float:
    """The deterministic 'score' of the fake LLMs."""
    return -float(len(prompt) + 2 * len(continuation)) / 10


class FakeLLM(LLM):
    """A deterministic LLM that records every batch it is asked for."""

    name = "fake"
    has_chat_template = False

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.generate_batches: list[list[str]] = []
        self.score_batches: list[list[tuple[str, str]]] = []

    @property
    def generated(self) -> int:
        return sum(len(b) for b in self.generate_batches)

    @property
    def scored(self) -> int:
        return sum(len(b) for b in self.score_batches)

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        return "|".join(f"{m['role']}:{m['content']}" for m in messages)

    def generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        self.generate_batches.append(list(prompts))
        if self.delay:
            time.sleep(self.delay)
        return [fake_reply(p)[: 10 + settings.max_new_tokens] for p in prompts]

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        self.score_batches.append(list(zip(prompts, continuations)))
        if self.delay:
            time.sleep(self.delay)
        return [Score(fake_logprob(p, c), len(c)) for p, c in zip(prompts, continuations)]


class RuleLLM(FakeLLM):
    """A fake LLM whose accuracy depends on the chain, so that collected rewards vary and can be learnt.

    It answers "What is a + b?" correctly when a hash of the whole prompt falls under a quality that
    grows with the number of demonstrations and with words of the chain ("step", "carefully",
    "Answer"); otherwise it answers a wrong number. Scores give the gold answer more mass when the
    quality is higher. Deterministic (crc32, not Python's salted hash).
    """

    name = "rule"
    #: proposals (replies to prompts that ask for an instruction or prompt) are "Add the numbers"
    #: plus a hash-chosen subset of these words, so a proposer's chains vary in quality
    PROPOSAL_WORDS = ("step", "by", "carefully", "and", "give", "the", "Answer", "now")

    @staticmethod
    def _quality(prompt: str) -> float:
        demos = prompt.count("assistant:")
        words = sum(w in prompt for w in ("step", "carefully", "Answer"))
        return min(0.95, 0.1 + 0.2 * demos + 0.15 * words)

    @staticmethod
    def _answer(prompt: str) -> int:
        a, b = re.findall(r"What is (\d+) \+ (\d+)\?", prompt)[-1]
        return int(a) + int(b)

    def generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        import zlib

        self.generate_batches.append(list(prompts))
        out = []
        for p in prompts:
            h = zlib.crc32(p.encode())
            if re.search(r"instruction|prompt", p, re.IGNORECASE):  # a baseline's proposer asks for one
                words = [w for i, w in enumerate(self.PROPOSAL_WORDS) if h >> i & 1]
                tag = "prompt" if "<prompt>" in p else "INS"
                out.append(f"<{tag}>{' '.join(['Add', 'the', 'numbers', *words])}.</{tag}>")
                continue
            right = h % 1000 < 1000 * self._quality(p)
            out.append(str(self._answer(p) + (0 if right else 1)))
        return out

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        import math

        self.score_batches.append(list(zip(prompts, continuations)))
        out = []
        for p, c in zip(prompts, continuations):
            if "What is" not in p:  # not a question of the task (e.g. a fluency score): a fixed text score
                out.append(Score(fake_logprob(p, c), max(len(c), 1)))
                continue
            q = self._quality(p)
            gold = c.strip().startswith(str(self._answer(p)))
            out.append(Score(math.log(q if gold else (1 - q) / 10), max(len(c), 1)))
        return out


def write_arithmetic_jsonl(path, n: int = 60) -> str:
    """An exact-match addition task file ("What is a + b?") for the user-task loader; returns its path."""
    import json

    with open(path, "w") as f:
        for uid in range(n):
            a, b = uid % 7 + 1, (3 * uid) % 11
            f.write(json.dumps({"input": f"What is {a} + {b}?", "target": str(a + b)}) + "\n")
    return str(path)


def synthetic_overrides(tmp_path, monkeypatch) -> list[str]:
    """Point the triples DataModule at ``RuleLLM`` triples on two small addition task files.

    Patches ``TriplesDataModule.llm`` (so no real LLM is loaded) through ``monkeypatch`` and returns
    CLI overrides: tasks, data dir, a small collection (6 trajectories x 3 edits x 6 examples),
    windows of 2, and logs and checkpoints under ``tmp_path``.
    """
    from tap.collection.datamodule import TriplesDataModule

    rule = RuleLLM()
    monkeypatch.setattr(TriplesDataModule, "llm", property(lambda self: rule))
    tasks = [write_arithmetic_jsonl(tmp_path / "add_a.jsonl", 60), write_arithmetic_jsonl(tmp_path / "add_b.jsonl", 50)]
    return [
        f"--data.init_args.tasks=[{tasks[0]}, {tasks[1]}]", f"--data.init_args.data_dir={tmp_path / 'data'}",
        "--data.init_args.trajectories=6", "--data.init_args.horizon=3", "--data.init_args.eval_examples=6",
        "--data.init_args.window=2", "--data.init_args.batch_size=4", "--data.init_args.split_fractions=[0.2, 0.2]",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}",
        "--trainer.enable_progress_bar=false",
    ]


def tiny_world_model(seed: int = 0):
    """An untrained ``WorldModel`` on the hash text encoder with small dimensions (builds in a second)."""
    import torch

    from tap.systems import WorldModel

    torch.manual_seed(seed)
    return WorldModel(encoder="hash", action_dim=16, deter_dim=16, stoch_dim=4, hidden_dim=32, ensemble=3, bins=21)


def save_tiny_world_model(path, tasks: Sequence[str] = ("tiny-arith",), seed: int = 0):
    """Write ``tiny_world_model`` as a checkpoint in the format Lightning saves (kind tag, hyperparameters,
    the data settings); returns the path.
    """
    import torch

    from tap.systems.checkpoints import KIND_KEY

    wm = tiny_world_model(seed)
    torch.save({"state_dict": wm.state_dict(), "hyper_parameters": dict(wm.hparams), KIND_KEY: "WorldModel",
                "datamodule_hyper_parameters": {"tasks": list(tasks), "trajectories": 4, "horizon": 3,
                                                "eval_examples": 6, "model": "rule"}}, path)
    return path


def import_benchmark(name: str):
    """A module of ``benchmarks/`` (not a package), imported by name for its tests."""
    import importlib
    import sys
    from pathlib import Path

    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder)
