"""A frozen LLM behind an OpenAI-compatible HTTP server (vLLM, llama.cpp's server, ...).

Generation uses ``/v1/completions`` with greedy decoding; scoring asks the server to echo the prompt
and continuation with per-token log-probabilities (``echo`` + ``logprobs``) and sums the tokens that
start inside the continuation. Requests run in parallel up to ``max_concurrency``, each with a
timeout, and are retried with exponential backoff on connection errors, timeouts, 429 and 5xx.
Wrap it in ``CachedLLM`` (``load_llm`` does) to share the on-disk call cache.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tap.errors import BackendError
from tap.llm.base import LLM, GenerationSettings, Score
from tap.llm.prompt import plain_prompt

RETRYABLE = {408, 429, 500, 502, 503, 504}


class OpenAICompatibleLLM(LLM):
    """Completions from an OpenAI-compatible server.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000`` (``/v1/completions`` is appended).
        model: the model name the server serves.
        name: cache key of this model and its numerics (default ``openai:<model>``); two servers of the
            same weights and dtype may share it.
        tokenizer: a local tokenizer folder whose chat template renders prompts (default: a plain Q/A
            transcript, as for base models).
        api_key: sent as a bearer token when set.
        max_concurrency: requests in flight at once.
        timeout: seconds per request.
        retries: extra attempts per request after a retryable failure.
        backoff: first retry delay in seconds, doubled per attempt.
    """

    def __init__(self, base_url: str, model: str, name: str | None = None, tokenizer: str | None = None,
                 api_key: str | None = None, max_concurrency: int = 8, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 0.5) -> None:
        if max_concurrency < 1 or timeout <= 0 or retries < 0:
            raise BackendError("max_concurrency must be >= 1, timeout > 0 and retries >= 0.")
        self.url = base_url.rstrip("/") + ("" if base_url.rstrip("/").endswith("/v1") else "/v1") + "/completions"
        self.model = model
        self.name = name or f"openai:{model}"
        self.api_key = api_key
        self.max_concurrency, self.timeout, self.retries, self.backoff = max_concurrency, timeout, retries, backoff
        self._tokenizer = None
        if tokenizer:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.has_chat_template = bool(self._tokenizer is not None and self._tokenizer.chat_template)

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        if self.has_chat_template:
            return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return plain_prompt(messages)  # type: ignore[arg-type]

    def _post(self, body: dict) -> dict:
        data = json.dumps({"model": self.model, **body}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:300]
                if err.code not in RETRYABLE:
                    raise BackendError(f"{self.url} refused the request (HTTP {err.code}): {detail}. Fix: check the "
                                       f"model name ({self.model!r}) and that the server supports completions with "
                                       "echo and logprobs.") from None
                last = f"HTTP {err.code}: {detail}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                last = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
        raise BackendError(f"{self.url} failed {self.retries + 1} times (last: {last}). Fix: check that the server "
                           "is up and reachable, or raise timeout/retries.")

    def _map(self, fn, items: list) -> list:
        if len(items) <= 1 or self.max_concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            return list(pool.map(fn, items))

    def generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        def one(prompt: str) -> str:
            out = self._post({"prompt": prompt, "max_tokens": settings.max_new_tokens, "temperature": 0,
                              "stop": list(settings.stop) or None})
            text = out["choices"][0]["text"]
            for s in settings.stop:  # servers may keep the stop string; cut as the local backend does
                text = text.split(s)[0]
            return text.strip()

        return self._map(one, list(prompts))

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        if len(prompts) != len(continuations):
            raise BackendError(f"score() needs one continuation per prompt: {len(continuations)} for {len(prompts)}.")

        def one(pair: tuple[str, str]) -> Score:
            prompt, cont = pair
            out = self._post({"prompt": prompt + cont, "max_tokens": 1, "temperature": 0, "echo": True,
                              "logprobs": 1})
            lp = out["choices"][0].get("logprobs") or {}
            offsets, values = lp.get("text_offset"), lp.get("token_logprobs")
            if not offsets or values is None:
                raise BackendError(f"{self.url} returned no echoed log-probabilities; scoring needs a server that "
                                   "supports `echo` with `logprobs` on /v1/completions (vLLM does).")
            start, end = len(prompt), len(prompt) + len(cont)
            picked = [v for o, v in zip(offsets, values) if start <= o < end and v is not None]
            if not picked:
                raise BackendError(f"no token of the continuation {cont!r} came back from {self.url}.")
            return Score(float(sum(picked)), len(picked))

        return self._map(one, list(zip(prompts, continuations)))
