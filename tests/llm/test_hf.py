import copy

import pytest
import torch

from tap.chains.render import plain_prompt
from tap.errors import BackendError
from tap.llm.base import GenerationSettings, Score
from tap.llm.hf import TransformersLLM, resolve_dtype
from tests.helpers import make_tokenizer

QUESTIONS = [
    "What is 3 + 4?",
    "Hi",
    "A much longer question about the numbers 1 2 3 4 5 6, and what they add up to?",
    "Is 2 + 2 = 5?",
    "x",
]
NO_STOP = GenerationSettings(max_new_tokens=16, stop=())


@pytest.fixture(scope="module")
def prompts(tiny_llm):
    return [tiny_llm.format_chat([{"role": "user", "content": q}]) for q in QUESTIONS]


@pytest.fixture(scope="module")
def unstopped(tiny_llm, prompts):
    """Replies generated one prompt at a time, without stop strings."""
    return [tiny_llm.generate([p], NO_STOP)[0] for p in prompts]


def _naive_greedy(llm: TransformersLLM, prompt: str, max_new_tokens: int) -> list[int]:
    """Greedy decoding by recomputing full logits over the whole sequence each step (no KV cache)."""
    ids = llm.tokenizer(prompt, add_special_tokens=False).input_ids
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(llm.model(torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(nxt)
            if nxt in llm.stop_ids.tolist():
                break
    return out


def test_setup(tiny_llm, tiny_tokenizer):
    assert tiny_llm.name == "tiny-llama"
    assert tiny_llm.has_chat_template
    assert tiny_llm.device == "cpu" and tiny_llm.dtype == torch.float32
    assert tiny_llm.stop_ids.tolist() == [tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert tiny_tokenizer.pad_token == "<pad>"
    assert not tiny_llm.model.training


def test_generate_returns_one_string_per_prompt(tiny_llm, prompts, unstopped):
    out = tiny_llm.generate(prompts, NO_STOP)
    assert len(out) == len(prompts) and all(isinstance(t, str) for t in out)
    assert len(set(unstopped)) == len(unstopped)  # the tiny model's replies depend on the prompt
    assert all(len(t) <= NO_STOP.max_new_tokens for t in out)


def test_batched_generation_equals_one_at_a_time(tiny_llm, prompts, unstopped):
    assert tiny_llm.generate(prompts, NO_STOP) == unstopped
    assert tiny_llm.generate(prompts[::-1], NO_STOP) == unstopped[::-1]


def test_batched_generation_equals_naive_greedy(tiny_llm, prompts):
    for prompt, text in zip(prompts, tiny_llm.generate(prompts, NO_STOP)):
        ids = _naive_greedy(tiny_llm, prompt, NO_STOP.max_new_tokens)
        expected = tiny_llm.tokenizer.decode(ids, skip_special_tokens=True)
        assert text == expected.split("<|im_end|>")[0].strip()


def test_small_batches_give_the_same_results(tiny_llm, prompts, unstopped):
    small = TransformersLLM.from_objects(tiny_llm.model, tiny_llm.tokenizer, "tiny-llama", batch_size=2,
                                         max_batch_tokens=150)
    assert small.generate(prompts, NO_STOP) == unstopped


def test_end_of_turn_token_stops_generation(tiny_llm, prompts, unstopped):
    long_reply = max(range(len(unstopped)), key=lambda i: len(unstopped[i]))
    text = unstopped[long_reply]
    assert len(text) >= 6
    llm = copy.copy(tiny_llm)
    stop_char = text[3]
    llm.stop_ids = torch.tensor(sorted({*tiny_llm.stop_ids.tolist(), llm.tokenizer.convert_tokens_to_ids(stop_char)}))
    assert llm.generate([prompts[long_reply]], NO_STOP) == [text[: text.index(stop_char)].strip()]


def test_stop_strings_cut_the_output(tiny_llm, prompts, unstopped):
    i = max(range(len(unstopped)), key=lambda k: len(unstopped[k]))
    text = unstopped[i]
    stop = text[4:6]
    expected = text.split(stop)[0].strip()
    assert expected != text
    settings = GenerationSettings(max_new_tokens=16, stop=(stop,))
    assert tiny_llm.generate([prompts[i]], settings) == [expected]
    # in a batch, the stop applies per row and the other rows are unchanged unless they hold it
    batch = tiny_llm.generate(prompts, settings)
    assert batch == [t.split(stop)[0].strip() for t in unstopped]


def test_several_stop_strings_cut_each_row_at_the_first(tiny_llm, prompts, unstopped):
    # stop at characters that occur inside several replies, so that rows stop at different steps
    counts = {ch: sum(ch in t[1:] for t in unstopped) for ch in set("".join(unstopped))}
    stops = tuple(sorted(ch for ch, n in counts.items() if n >= 2 and not ch.isspace()))[:2]
    assert len(stops) == 2

    def cut(text: str) -> str:
        for s in stops:
            text = text.split(s)[0]
        return text.strip()

    expected = [cut(t) for t in unstopped]
    assert sum(e != t for e, t in zip(expected, unstopped)) >= 2
    assert tiny_llm.generate(prompts, GenerationSettings(max_new_tokens=16, stop=stops)) == expected


def test_max_new_tokens_bounds_the_reply(tiny_llm, prompts, unstopped):
    short = tiny_llm.generate(prompts, GenerationSettings(max_new_tokens=3, stop=()))
    assert all(len(s) <= 3 for s in short)
    for s, full in zip(short, unstopped):
        assert full.startswith(s.strip()) or s == ""


def test_generate_plain_prompts_without_chat_template(tiny_llm):
    llm = TransformersLLM.from_objects(tiny_llm.model, make_tokenizer(chat_template=None), "tiny-plain")
    assert not llm.has_chat_template
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"}]
    assert llm.format_chat(messages) == plain_prompt(messages) == "S\n\nQ: Q?\nA:"
    out = llm.generate([llm.format_chat(messages), "Q: Hi\nA:"], NO_STOP)
    assert out == [llm.generate([p], NO_STOP)[0] for p in [llm.format_chat(messages), "Q: Hi\nA:"]]


def test_format_chat_uses_the_chat_template(tiny_llm):
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"},
                {"role": "assistant", "content": "A."}, {"role": "user", "content": "R?"}]
    assert tiny_llm.format_chat(messages) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n"
        "<|im_start|>assistant\nA.<|im_end|>\n<|im_start|>user\nR?<|im_end|>\n<|im_start|>assistant\n"
    )


# --- scoring -----------------------------------------------------------------------------------

PAIRS = [
    ("<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n", "7"),
    ("<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n", "Answer: 7."),
    ("Q: Is the sky blue?\nA:", " True"),
    ("a", "bcdefghijklmnopqrstuvwxyz0123456789"),
    ("A long prompt " * 8, " ok"),
    ("Hi", "<|im_end|>"),
]


def _naive_score(llm: TransformersLLM, prompt: str, continuation: str) -> float:
    p = llm.tokenizer(prompt, add_special_tokens=False).input_ids
    c = llm.tokenizer(continuation, add_special_tokens=False).input_ids
    with torch.no_grad():
        logp = torch.log_softmax(llm.model(torch.tensor([p + c])).logits[0].float(), dim=-1)
    return float(sum(logp[len(p) + k - 1, tok] for k, tok in enumerate(c)))


def test_score_matches_full_logits(tiny_llm):
    scores = tiny_llm.score([p for p, _ in PAIRS], [c for _, c in PAIRS])
    assert [s.n_tokens for s in scores] == [1, 10, 5, 35, 3, 1]
    for (p, c), s in zip(PAIRS, scores):
        assert s.logprob == pytest.approx(_naive_score(tiny_llm, p, c), abs=1e-4)
        assert s.logprob < 0


def test_score_is_independent_of_batching(tiny_llm):
    prompts, conts = [p for p, _ in PAIRS], [c for _, c in PAIRS]
    together = tiny_llm.score(prompts, conts)
    alone = [tiny_llm.score([p], [c])[0] for p, c in zip(prompts, conts)]
    small = TransformersLLM.from_objects(tiny_llm.model, tiny_llm.tokenizer, "tiny-llama", batch_size=2,
                                         max_batch_tokens=64).score(prompts, conts)
    for a, b, c in zip(together, alone, small):
        assert a.n_tokens == b.n_tokens == c.n_tokens
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.logprob == pytest.approx(c.logprob, abs=1e-4)


def test_prompt_states_are_the_mean_final_hidden_state_whatever_the_batch(tiny_llm):
    prompts = [p + c for p, c in PAIRS]
    got = tiny_llm.prompt_states(prompts)
    assert got.shape == (len(prompts), tiny_llm.model.config.hidden_size) and got.dtype == torch.float32
    small = TransformersLLM.from_objects(tiny_llm.model, tiny_llm.tokenizer, "tiny-llama", batch_size=2,
                                         max_batch_tokens=64).prompt_states(prompts)
    for row, text, other in zip(got, prompts, small):
        with torch.no_grad():  # naive: one prompt alone, the full model's last hidden state
            ids = tiny_llm.tokenizer([text], add_special_tokens=not tiny_llm.has_chat_template).input_ids
            hidden = tiny_llm.model(torch.tensor(ids), output_hidden_states=True).hidden_states[-1][0]
        assert torch.allclose(row, hidden.float().mean(0), atol=1e-5)
        assert torch.allclose(row, other, atol=1e-5)
    assert not torch.allclose(got[0], got[1])


def test_prompt_states_refuse_an_empty_prompt(tiny_llm):
    with pytest.raises(BackendError, match="empty prompt"):
        tiny_llm.prompt_states(["a", ""])


def test_score_mean_logprob():
    assert Score(-6.0, 3).mean_logprob == -2.0
    assert Score(0.0, 0).mean_logprob == 0.0


def test_score_length_mismatch(tiny_llm):
    with pytest.raises(BackendError, match="score\\(\\) got 2 prompts but 1 continuations"):
        tiny_llm.score(["a", "b"], ["c"])


# --- batching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_size", "max_tokens", "lengths", "expected"),
    [
        (2, 100, [10, 50, 30, 20, 40], [[1, 4], [2, 3], [0]]),
        (2, 90, [10, 50, 30, 20, 40], [[1], [4, 2], [3, 0]]),
        (16, 100, [10, 50, 30, 20, 40], [[1, 4], [2, 3, 0]]),
        (16, 10_000, [10, 50, 30, 20, 40], [[1, 4, 2, 3, 0]]),
        (1, 10_000, [3, 3, 5], [[2], [0], [1]]),
        (4, 10, [30, 5], [[0], [1]]),  # one sequence longer than the token budget still runs, alone
        (4, 100, [], []),
    ],
)
def test_batches(tiny_llm, batch_size, max_tokens, lengths, expected):
    llm = TransformersLLM.from_objects(tiny_llm.model, tiny_llm.tokenizer, "t", batch_size=batch_size,
                                       max_batch_tokens=max_tokens)
    batches = llm._batches(lengths)
    assert batches == expected
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= batch_size
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= max_tokens


def test_resolve_dtype():
    assert resolve_dtype("fp32", "cpu") == torch.float32
    assert resolve_dtype("float32", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert resolve_dtype("fp16", "cpu") == torch.float16
    assert resolve_dtype("auto", "cuda:0") == torch.bfloat16
    assert resolve_dtype("auto", "cpu") in (torch.float32, torch.bfloat16)


def test_resolve_dtype_unknown():
    assert resolve_dtype("int8", "cpu") == torch.float32  # int8 layers inside an fp32 model
    with pytest.raises(BackendError, match="unknown dtype 'int4'; use auto, bf16, fp32, fp16 or int8"):
        resolve_dtype("int4", "cpu")


def test_int8_quantizes_attention_and_gate_up_only_and_is_another_model(tmp_path, tiny_model, tiny_tokenizer):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    from tap.llm.hf import quantize_int8

    q = quantize_int8(copy.deepcopy(tiny_model))
    kinds = {n.split(".")[-1]: type(m) for n, m in q.named_modules() if n.startswith("model.layers.0.")}
    assert all(kinds[k] is DynamicLinear for k in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"))
    assert kinds["down_proj"] is torch.nn.Linear and type(q.lm_head) is torch.nn.Linear
    with pytest.raises(BackendError, match="no attention / MLP gate-up linear layers"):
        quantize_int8(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    tiny_model.save_pretrained(tmp_path / "tiny")
    tiny_tokenizer.save_pretrained(tmp_path / "tiny")
    fp32 = TransformersLLM(str(tmp_path / "tiny"), dtype="fp32", device="cpu", threads=1)
    int8 = TransformersLLM(str(tmp_path / "tiny"), dtype="int8", device="cpu", threads=1)
    assert fp32.name == "tiny@float32" and int8.name.startswith("tiny@int8-")  # its own name in cache and results
    prompt = ["Question: What is 3 + 4?\nAnswer:"]
    assert len(int8.generate(prompt, NO_STOP)) == 1 and len(int8.score(prompt, [" 7"])) == 1
    assert isinstance(int8.model.model.layers[0].self_attn.q_proj, DynamicLinear)
    with pytest.raises(BackendError, match="int8 runs on CPU only"):
        TransformersLLM(str(tmp_path / "tiny"), dtype="int8", device="cuda", threads=1)


def test_missing_gguf_file(tmp_path):
    with pytest.raises(BackendError, match="GGUF file .*nope.gguf does not exist"):
        TransformersLLM(str(tmp_path / "nope.gguf"), dtype="fp32", device="cpu", threads=1)


def test_unreachable_hub_model():
    # the suite runs with HF_HUB_OFFLINE=1 (conftest), so this fails fast without network
    with pytest.raises(BackendError, match="cannot load model 'no-such-org/no-such-model'"):
        TransformersLLM("no-such-org/no-such-model", dtype="fp32", device="cpu", threads=1)


def test_unloadable_model_directory(tmp_path):
    with pytest.raises(BackendError, match="cannot load model"):
        TransformersLLM(str(tmp_path), dtype="fp32", device="cpu", threads=1)


CHAIN = "You are careful. Think step by step. Examples: 2+2 is 4; 3+3 is 6; 5+1 is 6.\n"


def test_shared_prefix_scores_equal_the_full_path(tiny_llm):
    prompts = [CHAIN + f"Q: {i}+{i * 3 % 7}?\nA:" for i in range(9)]
    conts = [f" {i + i * 3 % 7}" for i in range(9)]
    prompts, conts = prompts + prompts[:3], conts + [" yes", " no", " 12"]  # several continuations per prompt
    llm = TransformersLLM.from_objects(tiny_llm.model, tiny_llm.tokenizer, "tiny-llama", batch_size=5)
    seqs = [p + c for p, c in zip(llm._encode(prompts), llm._encode(conts))]
    assert llm._shared_prefix(seqs, 10_000) >= len(CHAIN)  # the chain is shared (and so skipped once)
    llm.share_prefix = False
    full = llm.score(prompts, conts)
    llm.share_prefix = True
    shared = llm.score(prompts, conts)
    for a, b, (p, c) in zip(full, shared, zip(prompts, conts)):
        assert a.n_tokens == b.n_tokens
        assert b.logprob == pytest.approx(a.logprob, abs=1e-3)
        assert b.logprob == pytest.approx(_naive_score(llm, p, c), abs=1e-3)


def test_shared_prefix_is_skipped_when_it_cannot_help(tiny_llm):
    llm = TransformersLLM.from_objects(tiny_llm.model, tiny_llm.tokenizer, "tiny-llama")
    assert llm._shared_prefix([[1, 2, 3, 4, 5, 6, 7, 8, 9]], 100) == 0  # one sequence
    assert llm._shared_prefix([[1, 2, 3, 9], [1, 2, 3, 8]], 100) == 0  # shorter than min_shared_tokens
    long = list(range(20))
    assert llm._shared_prefix([long + [1], long + [2]], 100) == 20
    assert llm._shared_prefix([long + [1], long + [2]], 12) == 12  # never past the first scored position
    llm.share_prefix = False
    assert llm._shared_prefix([long + [1], long + [2]], 100) == 0


def test_score_mode_environment_is_the_same_with_and_without_sharing(tiny_llm, tiny_mc_task):
    from tap.chains import Chain, Demo
    from tap.env import Environment

    demos = tuple(Demo(ex.uid, ex.input, ex.answer) for ex in tiny_mc_task.train[:3])
    chain = Chain("Say whether the sum is right. Check each sum carefully.", demos=demos)
    llm = TransformersLLM.from_objects(tiny_llm.model, tiny_llm.tokenizer, "tiny-llama", batch_size=8)
    llm.share_prefix = False
    a = Environment(llm, tiny_mc_task).evaluate(chain, tiny_mc_task.val[:8])
    llm.share_prefix = True
    b = Environment(llm, tiny_mc_task).evaluate(chain, tiny_mc_task.val[:8])
    assert [r.extracted for r in a.results] == [r.extracted for r in b.results]
    for ra, rb in zip(a.results, b.results):
        assert rb.choice_logprobs == pytest.approx(ra.choice_logprobs, abs=1e-3)


def test_shared_prefix_generation_equals_the_full_path(tiny_llm):
    prompts = [CHAIN + f"Q: {i}+{i * 3 % 7}?\nA:" + " " * (i % 3) for i in range(7)]  # different lengths
    llm = TransformersLLM.from_objects(tiny_llm.model, tiny_llm.tokenizer, "tiny-llama", batch_size=4)
    settings = GenerationSettings(max_new_tokens=12, stop=())
    llm.share_prefix = False
    full = llm.generate(prompts, settings)
    llm.share_prefix = True
    assert llm._shared_prefix(llm._encode(prompts), 10_000) >= len(CHAIN)
    assert llm.generate(prompts, settings) == full
    assert [llm.generate([p], settings)[0] for p in prompts] == full  # one at a time: nothing shared
    assert len(set(full)) > 1  # the replies differ, so the comparison means something
