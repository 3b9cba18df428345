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


def char_logprob(c: str) -> float:
    return -(ord(c) % 7 + 1) / 10


class Handler(BaseHTTPRequestHandler):
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
        self._send(code, payload)

    def _reply(self, fail: bool, body: dict) -> tuple[int, dict]:
        if fail:
            return 503, {"error": "overloaded"}
        if self.path != "/v1/completions" or body.get("model") != "tiny":
            return 404, {"error": f"no model {body.get('model')!r} at {self.path}"}
        prompt = body["prompt"]
        if body.get("echo"):
            text = prompt + "x"  # the echoed prompt and one generated token
            lps = [None] + [char_logprob(c) for c in text[1:]]
            logprobs = {"tokens": list(text), "token_logprobs": lps, "text_offset": list(range(len(text)))}
            return 200, {"choices": [{"text": text, "logprobs": logprobs}]}
        return 200, {"choices": [{"text": fake_reply(prompt)[: body["max_tokens"]]}]}

    def _send(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
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
    server.delay = 0.5
    start = time.time()
    with pytest.raises(BackendError, match="failed 2 times"):
        OpenAICompatibleLLM(server.url, "tiny", timeout=0.1, retries=1, backoff=0.01).generate(["p"],
                                                                                              GenerationSettings())
    assert time.time() - start < 2
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
