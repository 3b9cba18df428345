"""A frozen LLM behind an OpenAI-compatible HTTP server (vLLM, llama.cpp's server, ...).

Generation uses ``/v1/completions`` with greedy decoding; scoring asks the server to echo the prompt
and continuation with per-token log-probabilities (``echo`` + ``logprobs``) and sums the tokens that
start inside the continuation (llama-cpp-python's offsets, which skip special tokens, are moved back into the
prompt's characters). Requests run in parallel up to ``max_concurrency``, each with a
timeout, and are retried with exponential backoff on connection errors, timeouts, 429 and 5xx.
Wrap it in ``CachedLLM`` (``load_llm`` does) to share the on-disk call cache.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tap.errors import BackendError
from tap.llm.base import LLM, GenerationSettings, Score
from tap.llm.prompt import plain_prompt

RETRYABLE = {408, 429, 500, 502, 503, 504}
# a 5xx whose body names one of these is a misconfiguration, not a passing fault: it is not retried
LOGPROBS_OFF = ("logits_all", "logprobs is not supported")
NO_LOGPROBS_FIX = ("Fix: start the server with every token's logits kept: llama.cpp's server with `--logits_all true` "
                   "(`python -m tap.llm.server` does), vLLM with `--max-logprobs 1` or more.")


MISALIGNED_FIX = ("Fix: llama-cpp-python's server: start it with "
                  "`--kv_overrides tokenizer.ggml.add_bos_token=bool:true` (`python -m tap.llm.server` does; "
                  "abetlen/llama-cpp-python#1983), or use a server whose echoed log-probabilities are right (vLLM), "
                  "or search without the gold-answer score (generate mode with dense_reward off).")
ECHO_PROBE = "Q: What is 2 + 3?\nA:"


class OpenAICompatibleLLM(LLM):
    """Completions from an OpenAI-compatible server.

    Before the first completion it asks ``/v1/models`` once whether the server serves ``model`` (llama.cpp's
    server answers any name with its own model, so a wrong name would otherwise fill the cache silently).

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
        retries: extra attempts per request after a retryable failure (connection refused or reset,
            timeout, 408, 429, 5xx). The defaults wait 0.5, 1, 2, 4, 8, 8, 8 s: a server restart of
            up to about 30 s is ridden out.
        backoff: first retry delay in seconds, doubled per attempt up to ``max_backoff``; a 429/503's
            ``Retry-After`` header is followed up to ``max_backoff``.
        max_backoff: longest wait between two attempts.
        check_model: ask ``/v1/models`` before the first call (skipped when the server has no such list).
        check_echo: probe the echoed log-probabilities' alignment before the first score.
    """

    def __init__(self, base_url: str, model: str, name: str | None = None, tokenizer: str | None = None,
                 api_key: str | None = None, max_concurrency: int = 8, timeout: float = 60.0, retries: int = 7,
                 backoff: float = 0.5, max_backoff: float = 8.0, check_model: bool = True,
                 check_echo: bool = True) -> None:
        if max_concurrency < 1 or timeout <= 0 or retries < 0 or backoff < 0 or max_backoff < 0:
            raise BackendError("max_concurrency must be >= 1, timeout > 0, and retries, backoff and max_backoff "
                               ">= 0.")
        root = base_url.rstrip("/") + ("" if base_url.rstrip("/").endswith("/v1") else "/v1")
        self.url = root + "/completions"
        self.models_url = root + "/models"
        self.model = model
        self.name = name or f"openai:{model}"
        self.api_key = api_key
        self.max_concurrency, self.timeout, self.retries, self.backoff = max_concurrency, timeout, retries, backoff
        self.max_backoff = max_backoff
        self.attempts = 0  # HTTP requests sent, retries included (completions and the model check)
        self._checked = not check_model
        self._echo_checked = not check_echo
        self._check_lock = threading.RLock()  # one check at a time; requests wait for it
        self._count_lock = threading.Lock()
        self._tokenizer = None
        if tokenizer:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.has_chat_template = bool(self._tokenizer is not None and self._tokenizer.chat_template)

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        if self.has_chat_template:
            return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return plain_prompt(messages)  # type: ignore[arg-type]

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        wait = self.backoff * 2 ** (attempt - 1)
        if retry_after:
            try:
                wait = max(wait, float(retry_after))
            except ValueError:  # an HTTP date: keep our own backoff
                pass
        return min(wait, self.max_backoff)

    def _request(self, url: str, body: dict | None) -> dict:
        """One JSON request (POST ``body``, or GET when None) with retries; BackendError when it cannot succeed."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last, retry_after = "", None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            retry_after = None
            with self._count_lock:
                self.attempts += 1
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:300]
                if err.code >= 500 and any(s in detail for s in LOGPROBS_OFF):
                    raise BackendError(f"{url} keeps no log-probabilities (HTTP {err.code}: {detail}). "
                                       f"{NO_LOGPROBS_FIX}") from None
                if err.code not in RETRYABLE:
                    raise _HTTPRefusal(err.code, f"{url} refused the request (HTTP {err.code}): {detail}. Fix: "
                                       f"check the model name ({self.model!r}) and that the server supports "
                                       "completions with echo and logprobs.") from None
                last, retry_after = f"HTTP {err.code}: {detail}", err.headers.get("Retry-After")
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
                last = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
        raise BackendError(f"{url} failed {self.retries + 1} times (last: {last}). Fix: check that the server is up "
                           "and reachable (docs/server.md), or raise timeout/retries for a slow or restarting one.")

    def check(self) -> None:
        """Fail before any completion is paid when the server does not list ``model`` in ``/v1/models``
        (a server without that list passes).
        """
        with self._check_lock:
            if self._checked:
                return
            try:
                listing = self._request(self.models_url, None)
            except _HTTPRefusal:  # 404/405/501: this server keeps no model list
                listing = {}
            served = [m.get("id") for m in listing.get("data", []) if isinstance(m, dict)]
            if served and self.model not in served:
                raise BackendError(f"the server at {self.models_url} serves {served}, not {self.model!r}. Fix: use "
                                   f"--model openai:{served[0]}@<url>, or start the server with that name (llama.cpp: "
                                   "--model_alias).")
            self._checked = True

    def check_echo(self) -> None:
        """Fail before any score is paid when the server's echoed log-probabilities are misaligned (see the
        class docstring); pass when the probe is inconclusive (no log-probabilities with generation, or the
        generated token is tokenized otherwise inside the echo).
        """
        with self._check_lock:
            if self._echo_checked:
                return
            own = self._post({"prompt": ECHO_PROBE, "max_tokens": 1, "temperature": 0, "logprobs": 1})
            gen = own["choices"][0].get("logprobs") or {}
            text, lps = own["choices"][0].get("text", ""), gen.get("token_logprobs") or []
            if text and len(lps) == 1 and lps[0] is not None:
                echo = self._post({"prompt": ECHO_PROBE + text, "max_tokens": 1, "temperature": 0, "echo": True,
                                   "logprobs": 1})["choices"][0].get("logprobs") or {}
                picked = [(t, v) for t, o, v in zip(echo.get("tokens") or [], echo.get("text_offset") or [],
                                                    echo.get("token_logprobs") or []) if o == len(ECHO_PROBE)]
                if len(picked) == 1 and picked[0][0] == text and picked[0][1] is not None \
                        and abs(picked[0][1] - lps[0]) > 0.05 + 0.05 * abs(lps[0]):
                    raise BackendError(
                        f"{self.url} echoes misaligned log-probabilities: it generated {text!r} after {ECHO_PROBE!r} "
                        f"with log-probability {lps[0]:.3f}, but its echo scores that same token {picked[0][1]:.3f}. "
                        f"Every gold-answer and choice score would be wrong. {MISALIGNED_FIX}")
            self._echo_checked = True

    def _post(self, body: dict) -> dict:
        self.check()
        try:
            return self._request(self.url, {"model": self.model, **body})
        except _HTTPRefusal as err:
            raise BackendError(str(err)) from None

    def _map(self, fn, items: list) -> list:
        if len(items) <= 1 or self.max_concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            return list(pool.map(fn, items))

    def generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        if prompts:
            self.check()  # once, before the requests fan out
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
        if prompts:
            self.check()
            self.check_echo()

        def one(pair: tuple[str, str]) -> Score:
            prompt, cont = pair
            out = self._post({"prompt": prompt + cont, "max_tokens": 1, "temperature": 0, "echo": True,
                              "logprobs": 1})
            lp = out["choices"][0].get("logprobs") or {}
            offsets, values = lp.get("text_offset"), lp.get("token_logprobs")
            if not offsets or values is None:
                raise BackendError(f"{self.url} returned no echoed log-probabilities; scoring needs `echo` with "
                                   f"`logprobs` on /v1/completions. {NO_LOGPROBS_FIX}")
            # llama-cpp-python counts offsets in its detokenized text, where special tokens (a chat template's
            # <|im_start|>, ...) are empty: move them by what its echoed text has more than its tokens
            text, tokens = out["choices"][0].get("text") or "", lp.get("tokens") or []
            lag = 0
            if text.startswith(prompt + cont) and len(tokens) == len(offsets):
                lag = max(0, len(text) - (offsets[-1] + len(tokens[-1] or "")))
            start, end = len(prompt), len(prompt) + len(cont)
            picked = [v for o, v in zip(offsets, values) if start <= o + lag < end and v is not None]
            if not picked:
                raise BackendError(f"no token of the continuation {cont!r} came back from {self.url}.")
            return Score(float(sum(picked)), len(picked))

        return self._map(one, list(zip(prompts, continuations)))


class _HTTPRefusal(BackendError):
    """A 4xx (or other non-retryable status) answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
