"""Which linear layers can ``dtype: int8`` quantize without changing SmolLM2's answers much?

Greedy replies (6 new tokens) of SmolLM2 in fp32 and in several dynamic-int8 variants (FBGEMM, on this
CPU's kernels) to 24 val examples of ``ii:singular_to_plural`` with 3 demonstrations: accuracy (exact
first line) and the share of replies identical to fp32's. The variants: every linear layer (per-tensor
or per-channel weights, with or without the LM head) and ``tap.llm.hf.INT8_LAYERS`` (attention and MLP
gate/up, per-channel: what ``dtype: int8`` quantizes). A probe on one task, not an accuracy benchmark.

    python benchmarks/int8_layers.py      # about 1 minute on 2 cores
"""

from __future__ import annotations

import copy
import re
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tap.llm.base import GenerationSettings  # noqa: E402
from tap.llm.hf import INT8_LAYERS, TransformersLLM, int8_kernel, quantize_int8  # noqa: E402
from tap.tasks import load_task  # noqa: E402


def _quantize_all(model: torch.nn.Module, per_channel: bool, head: bool) -> torch.nn.Module:
    from torch.ao import quantization as Q

    qconfig = Q.per_channel_dynamic_qconfig if per_channel else Q.default_dynamic_qconfig
    names = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and (head or n != "lm_head")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Q.quantize_dynamic(model, {n: qconfig for n in names}, dtype=torch.qint8, inplace=True)


def main() -> None:
    llm = TransformersLLM("smollm2", dtype="fp32")
    fp32 = llm.model
    task = load_task("ii:singular_to_plural", seed=0)
    demos = "".join(f"Input: {e.input}\nOutput: {e.answer}\n\n" for e in task.train[:3])
    prompts = [f"Write the plural form of the word.\n\n{demos}Input: {e.input}\nOutput:" for e in task.val[:24]]
    gold = [e.answer for e in task.val[:24]]
    settings = GenerationSettings(max_new_tokens=6)

    def replies(model: torch.nn.Module) -> list[str]:
        llm._attach(model)
        return llm.generate(prompts, settings)

    base = replies(fp32)
    variants = {"fp32": lambda: fp32}
    for per_channel in (False, True):
        for head in (True, False):
            weights = "per-channel" if per_channel else "per-tensor"
            name = f"every linear layer, {weights}, LM head {'in' if head else 'out'}"
            variants[name] = lambda pc=per_channel, h=head: _quantize_all(copy.deepcopy(fp32), pc, h)
    variants[f"INT8_LAYERS {INT8_LAYERS!r} (dtype int8)"] = lambda: quantize_int8(copy.deepcopy(fp32))
    print(f"int8 kernels: {int8_kernel()}; {len(prompts)} examples\n")
    print("| variant | accuracy | replies identical to fp32 |\n|---|---|---|")
    for name, build in variants.items():
        out = base if name == "fp32" else replies(build())
        acc = sum(re.split(r"\n", o.strip())[0].strip() == g for o, g in zip(out, gold)) / len(gold)
        same = sum(a == b for a, b in zip(out, base)) / len(base)
        print(f"| {name} | {acc:.2f} | {same:.0%} |")


if __name__ == "__main__":
    main()
