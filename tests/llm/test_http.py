"""The OpenAI-compatible HTTP backend against a minimal completions server on loopback (characters are
tokens; deterministic replies and log-probabilities), with failures injected on demand."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tap.errors import BackendError
from tap.llm import load_llm
from tap.llm.base import GenerationSettings
from tap.llm.http import OpenAICompatibleLLM
from tests.helpers import fake_reply


def srv_fail(srv) -> tuple[int, dict]:
    return srv.fail_code, {"error": "overloaded"}


def char_logprob(c: str) -> float:
    return -(ord(c) % 7 + 1) / 10


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - /v1/models, when the test gives the server a model list
        srv = self.server
        with srv.lock:
            srv.gets += 1
        if srv.models is None or self.path != "/v1/models":
            return self._send(404, {"error": "not found"})
        self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in srv.models]})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests += 1
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
            fail = srv.fail_next > 0
            srv.fail_next -= fail
        time.sleep(srv.delay)
        code, payload = self._reply(fail, body)
        with srv.lock:  # out of flight before the reply is written: a client that has its answer may send the next
            srv.inflight -= 1
        self._send(code, payload, {"Retry-After": str(srv.retry_after)} if fail and srv.retry_after else None)

    def _reply(self, fail: bool, body: dict) -> tuple[int, dict]:
        if fail:
            return srv_fail(self.server)
        if body.get("logprobs") and self.server.no_logits:  # what llama.cpp's server answers without --logits_all
            return 500, {"error": {"message": "logprobs is not supported for models created with logits_all=False",
                                   "type": "internal_server_error"}}
        if self.path != "/v1/completions" or body.get("model") != "tiny":
            return 404, {"error": f"no model {body.get('model')!r} at {self.path}"}
        prompt = body["prompt"]
        if body.get("echo"):
            text = prompt + "x"  # the echoed prompt and one generated token
            lps = [None] + [char_logprob(c) for c in text[1:]]
            logprobs = {"tokens": list(text), "token_logprobs": lps, "text_offset": list(range(len(text)))}
            return 200, {"choices": [{"text": text, "logprobs": logprobs}]}
        text = fake_reply(prompt)[: body["max_tokens"]]
        if body.get("logprobs") and self.server.gen_logprob is not None:  # one value per generated character
            return 200, {"choices": [{"text": text, "logprobs": {"tokens": list(text), "text_offset": [
                len(prompt) + i for i in range(len(text))], "token_logprobs": [self.server.gen_logprob] * len(text)}}]}
        return 200, {"choices": [{"text": text}]}

    def _send(self, code: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.lock, srv.requests, srv.inflight, srv.max_inflight, srv.fail_next, srv.delay = threading.Lock(), 0, 0, 0, 0, 0.0
    srv.models, srv.fail_code, srv.retry_after, srv.no_logits, srv.gets = None, 503, 0, False, 0
    srv.gen_logprob = None
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_generate_and_score_match_the_server_with_bounded_concurrency(server):
    server.delay = 0.05
    llm = OpenAICompatibleLLM(server.url, "tiny", max_concurrency=3, backoff=0.01)
    prompts = [f"question {i}?" for i in range(8)]
    settings = GenerationSettings(max_new_tokens=12)
    assert llm.generate(prompts, settings) == [fake_reply(p)[:12].strip() for p in prompts]
    assert 1 < server.max_inflight <= 3
    scores = llm.score(["Q: 2+2\nA:", "Q: 3+3\nA:"], [" 4", " 6"])
    assert [s.n_tokens for s in scores] == [2, 2]
    assert scores[0].logprob == pytest.approx(char_logprob(" ") + char_logprob("4"))
    assert llm.name == "openai:tiny" and not llm.has_chat_template
    assert llm.format_chat([{"role": "user", "content": "hi"}]) == "Q: hi\nA:"


def test_retryable_failures_are_retried_then_reported(server):
    server.fail_next = 2
    llm = OpenAICompatibleLLM(server.url, "tiny", retries=3, backoff=0.01)
    assert llm.generate(["p"], GenerationSettings(max_new_tokens=5)) == [fake_reply("p")[:5].strip()]
    assert server.requests == 3
    server.fail_next = 5
    with pytest.raises(BackendError, match="failed 2 times.*HTTP 503"):
        OpenAICompatibleLLM(server.url, "tiny", retries=1, backoff=0.01).generate(["p"], GenerationSettings())


def test_client_errors_fail_at_once_and_timeouts_are_bounded(server):
    with pytest.raises(BackendError, match="HTTP 404.*model name"):
        OpenAICompatibleLLM(server.url, "other", retries=3, backoff=0.01).score(["a"], ["b"])
    assert server.requests == 1  # a 4xx is not retried
    server.delay = 5.0  # the server would answer after 5 s; the client gives up on each attempt after 0.1 s
    start = time.monotonic()
    with pytest.raises(BackendError, match="failed 2 times"):
        OpenAICompatibleLLM(server.url, "tiny", timeout=0.1, retries=1, backoff=0.01).generate(["p"],
                                                                                              GenerationSettings())
    assert time.monotonic() - start < server.delay  # it did not wait for the server: the timeout, not the clock
    with pytest.raises(BackendError, match="failed"):
        OpenAICompatibleLLM("http://127.0.0.1:9", "tiny", retries=0).generate(["p"], GenerationSettings())


def test_through_load_llm_the_environment_and_the_cache(server, tmp_path):
    from tap.chains import Chain
    from tap.env import Environment
    from tests.helpers import arithmetic_task

    task = arithmetic_task(40)
    llm = load_llm(f"openai:tiny@{server.url}", cache=tmp_path / "calls.sqlite", max_concurrency=4,
                   dtype="bfloat16", batch_size=8)  # what tap.collect passes: local-model settings are dropped
    env = Environment(llm, task)
    first = env.evaluate(Chain(task.description), task.val[:6])
    assert first.llm_calls == 12 and first.cache_hits == 0  # 6 replies + 6 gold-answer scores
    again = env.evaluate(Chain(task.description), task.val[:6])
    assert again.llm_calls == 0 and again.cache_hits == 12 and again.to_dict() == {**first.to_dict(),
                                                                                    "llm_calls": 0, "cache_hits": 12}
    with pytest.raises(BackendError, match="openai:<model>@<base url>"):
        load_llm("openai:tiny", cache=None)


def test_the_model_list_is_checked_once_before_any_call_is_paid(server):
    server.models = ["tiny"]
    llm = OpenAICompatibleLLM(server.url, "tiny", max_concurrency=4, backoff=0.01)
    assert len(llm.generate([f"q{i}" for i in range(6)], GenerationSettings(max_new_tokens=3))) == 6
    assert server.gets == 1 and server.requests == 6 and llm.attempts == 7  # one model check, shared by the threads
    with pytest.raises(BackendError, match=r"serves \['tiny'\], not 'big'. Fix: use --model openai:tiny@"):
        OpenAICompatibleLLM(server.url, "big", backoff=0.01).generate(["p"], GenerationSettings())
    assert server.gets == 2 and server.requests == 6  # no completion was sent
    assert OpenAICompatibleLLM(server.url, "big", check_model=False, retries=0).check() is None  # asked not to


def test_retry_after_is_followed_up_to_max_backoff(server):
    server.fail_next, server.fail_code, server.retry_after = 2, 429, 1
    start = time.monotonic()
    llm = OpenAICompatibleLLM(server.url, "tiny", retries=2, backoff=0.01, max_backoff=0.3)
    assert llm.generate(["p"], GenerationSettings(max_new_tokens=4)) == [fake_reply("p")[:4].strip()]
    assert llm.attempts == 1 + 3 and time.monotonic() - start >= 2 * 0.3  # capped at max_backoff, not 1 s
    assert llm._delay(1, "7") == 0.3 and llm._delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.01
    with pytest.raises(BackendError, match="max_backoff"):
        OpenAICompatibleLLM(server.url, "tiny", max_backoff=-1)


def test_a_server_without_logits_is_not_retried_and_names_the_flag(server):
    server.no_logits = True
    llm = OpenAICompatibleLLM(server.url, "tiny", retries=5, backoff=0.01)
    with pytest.raises(BackendError, match="keeps no log-probabilities.*--logits_all true"):
        llm.score(["Q: 1\nA:"], [" 1"])
    assert llm.attempts == 2  # the model check (404: no list) and one completion


def test_load_llm_takes_timeout_and_retries_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("TAP_SERVER_TIMEOUT", "7.5")
    monkeypatch.setenv("TAP_SERVER_RETRIES", "2")
    llm = load_llm(f"openai:tiny@{server.url}", cache=None)
    assert (llm.llm.timeout, llm.llm.retries) == (7.5, 2)
    assert load_llm(f"openai:tiny@{server.url}", cache=None, retries=0).llm.retries == 0  # the caller's wins
    monkeypatch.setenv("TAP_SERVER_RETRIES", "many")
    with pytest.raises(BackendError, match=r"\$TAP_SERVER_RETRIES must be an integer, got 'many'"):
        load_llm(f"openai:tiny@{server.url}", cache=None)


def test_misaligned_echo_log_probabilities_fail_before_any_score_is_paid(server):
    from tap.llm.http import ECHO_PROBE

    first = fake_reply(ECHO_PROBE)[0]
    server.gen_logprob = char_logprob(first)  # generation agrees with the echo: scores go through
    llm = OpenAICompatibleLLM(server.url, "tiny", backoff=0.01)
    assert llm.score(["Q: 1\nA:"], [" 1"])[0].n_tokens == 2
    assert server.requests == 3  # the probe (generate, echo) once, then the score
    llm.score(["Q: 2\nA:"], [" 2"])
    assert server.requests == 4
    server.gen_logprob, server.requests = char_logprob(first) - 3.0, 0  # an echo off by one position, say
    with pytest.raises(BackendError, match=r"misaligned log-probabilities.*add_bos_token=bool:true"):
        OpenAICompatibleLLM(server.url, "tiny", backoff=0.01).score(["Q: 1\nA:"], [" 1"])
    assert server.requests == 2  # no score was sent
    unchecked = OpenAICompatibleLLM(server.url, "tiny", backoff=0.01, check_echo=False)
    assert unchecked.score(["Q: 1\nA:"], [" 1"])[0].n_tokens == 2


def test_a_server_backend_saves_each_round_of_concurrent_requests(server, tmp_path):
    """A killed client loses at most the requests in flight: the cache is written every max_concurrency calls."""
    from tap.llm import load_llm

    llm = load_llm(f"openai:tiny@{server.url}", cache=tmp_path / "calls.sqlite", max_concurrency=3)
    assert llm.chunk == 3
