"""TaP's OpenAI-compatible backend against llama.cpp's real server (``llama-cpp-python[server]``) serving
SmolLM2's GGUF on loopback, with faults injected by killing the server or through ``FaultProxy``.

Every request loop is bounded (retries, timeouts); every server and proxy is stopped in a fixture or a
``with`` block; waits poll conditions with failsafes, and no assertion depends on the machine's speed.
Skipped, with the reason, when the server is not installed (``pip install -e '.[server]'``).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tap.errors import BackendError
from tap.llm import load_llm
from tap.llm.base import GenerationSettings
from tap.llm.http import OpenAICompatibleLLM
from tap.llm.server import LlamaServer, server_installed
from tests.helpers import arithmetic_task
from tests.llm.fault_proxy import FaultProxy

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not server_installed(), reason="llama-cpp-python[server] is not installed: "
                       "pip install -e '.[server]' (a native build, docs/server.md)"),
]
THREADS = 2
SETTINGS = GenerationSettings(max_new_tokens=12)
PROMPTS = [f"Q: What is {a} + {b}?\nA:" for a, b in [(1, 2), (3, 4), (2, 7), (5, 5), (6, 1), (9, 3)]]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LlamaServer("smollm2", threads=THREADS, log=tmp_path_factory.mktemp("srv") / "server.log") as srv:
        yield srv


@pytest.fixture
def proxy(server):
    with FaultProxy(server.url) as p:
        yield p


def raw_completion(url: str, body: dict) -> dict:
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def quick(url: str, model: str, **kw) -> OpenAICompatibleLLM:
    kw = {"backoff": 0.05, "max_backoff": 0.5, "timeout": 120.0, **kw}
    return OpenAICompatibleLLM(url, model, **kw)


def test_generate_and_score_agree_with_the_servers_own_completions(server):
    llm = quick(server.url, server.alias)
    # a chat-template prompt too: its special tokens are empty in the server's echoed offsets
    prompts = [*PROMPTS, "<|im_start|>user\nWhat is the plural of duel?<|im_end|>\n<|im_start|>assistant\n"]
    replies = llm.generate(prompts, SETTINGS)
    for prompt, reply in zip(prompts, replies):
        own = raw_completion(server.url, {"model": server.alias, "prompt": prompt, "max_tokens": 12,
                                          "temperature": 0, "stop": ["\n\n"], "logprobs": 1})["choices"][0]
        assert reply == own["text"].strip() and reply
        # the echo score of the server's own greedy text is the log-probability it generated that text with
        text, lps = own["text"], own["logprobs"]["token_logprobs"]
        score = llm.score([prompt], [text])[0]
        assert score.n_tokens == len(lps)
        assert score.logprob == pytest.approx(sum(lps), abs=0.02 * len(lps))
    # greedy: the generated first token scores at least as well as any other continuation
    best = llm.score([PROMPTS[0]], [" " + replies[0].split()[0]])[0].logprob
    assert all(s.logprob <= best + 1e-3 for s in llm.score([PROMPTS[0]] * 3, [" banana", " 17", " the"]))
    assert llm.generate(prompts, SETTINGS) == replies  # deterministic


def test_gold_answer_score_and_the_cache_through_the_environment(server, proxy, tmp_path):
    from tap.chains import Chain
    from tap.env import Environment

    task = arithmetic_task(40)
    llm = load_llm(f"openai:{server.alias}@{proxy.url}", cache=tmp_path / "calls.sqlite", backoff=0.05)
    env = Environment(llm, task)
    first = env.evaluate(Chain(task.description), task.val[:4])
    # 4 replies + 4 gold-answer scores (echo), and the echo-alignment probe's two requests (not TaP's calls)
    assert first.llm_calls == 8 and sum(proxy.paid.values()) == 8 + 2
    golds = [r.gold_prob for r in first.results]
    assert all(0 < g <= 1 for g in golds) and len(set(golds)) > 1
    again = Environment(load_llm(f"openai:{server.alias}@{proxy.url}", cache=tmp_path / "calls.sqlite"), task)
    assert again.evaluate(Chain(task.description), task.val[:4]).llm_calls == 0
    assert sum(proxy.paid.values()) == 8 + 2


def test_concurrency_8_gives_the_serial_answers(server, proxy):
    prompts = [f"Q: Name a word that rhymes with {w}.\nA:" for w in
               ["cat", "dog", "tree", "sun", "moon", "star", "rain", "snow", "fish", "bird", "cake", "road"]]
    serial = quick(server.url, server.alias, max_concurrency=1).generate(prompts, SETTINGS)
    scores1 = quick(server.url, server.alias, max_concurrency=1).score(prompts, [" hat"] * len(prompts))
    llm = quick(proxy.url, server.alias, max_concurrency=8)
    assert llm.generate(prompts, SETTINGS) == serial
    assert [s.logprob for s in llm.score(prompts, [" hat"] * len(prompts))] == pytest.approx(
        [s.logprob for s in scores1], abs=1e-4)
    assert 1 < proxy.max_inflight <= 8


def run_search(spec: str, cache: Path, budget_calls: int, seed: int = 0):
    """A short ``random-sh`` search (the ``random`` preset) through the planner's Python API."""
    from tap.planning import PlanConfig, Planner

    config = PlanConfig(preset="random", eval_examples=4, test_examples=0, max_new_tokens=12)
    return Planner(None, config=config, model=spec, cache=str(cache)).optimize(
        arithmetic_task(40), budget_calls=budget_calls, seed=seed, progress=False)


def test_a_search_of_64_calls_end_to_end(server, proxy, tmp_path):
    result = run_search(f"openai:{server.alias}@{proxy.url}", tmp_path / "calls.sqlite", budget_calls=32)
    search = result.costs["search"]
    assert search["example_evals"] <= 32 and search["llm_calls"] == 2 * search["example_evals"] > 32
    assert sum(proxy.paid.values()) == search["llm_calls"] + 2 and max(proxy.paid.values()) == 1  # + the probe
    result.check_replay()
    rerun = run_search(f"openai:{server.alias}@{proxy.url}", tmp_path / "calls.sqlite", budget_calls=32)
    assert rerun.costs["search"]["llm_calls"] == 0 and rerun.final_chain == result.final_chain


# ---- faults -----------------------------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path):
    """A server of this test's own, which it may kill and restart (on the same port)."""
    srv = LlamaServer("smollm2", threads=THREADS, log=tmp_path / "own.log")
    try:
        yield srv.start()
    finally:
        srv.stop()


def test_server_killed_mid_collection_and_restarted_pays_no_call_twice(own_server, tmp_path):
    prompts = [f"Q: What is {a} times {a}?\nA:" for a in range(2, 26)]  # 24 calls
    with FaultProxy(own_server.url) as proxy:
        spec = f"openai:{own_server.alias}@{proxy.url}"
        out: dict = {}

        def collect() -> None:  # the cache's SQLite connection belongs to the thread that opens it
            llm = load_llm(spec, cache=tmp_path / "calls.sqlite", max_concurrency=2, retries=60, backoff=0.1,
                           max_backoff=1.0)
            out["r"], out["calls"] = llm.generate(prompts, SETTINGS), llm.calls

        worker = threading.Thread(target=collect, daemon=True)
        worker.start()
        assert proxy.wait_for(lambda: sum(proxy.paid.values()) >= 4 or not worker.is_alive(), timeout=300)
        assert worker.is_alive()
        own_server.kill()  # mid-collection: calls are in flight
        down = proxy.requests
        assert proxy.wait_for(lambda: proxy.requests > down + 1, timeout=60)  # the client retries meanwhile
        own_server.start()  # same port
        worker.join(timeout=600)
        assert not worker.is_alive() and len(out["r"]) == 24 and all(out["r"])
        assert out["calls"] == 24 and sum(proxy.paid.values()) == 24 and max(proxy.paid.values()) == 1
        # a resumed run over the same cache pays nothing, and the answers are the undisturbed server's
        resumed = load_llm(spec, cache=tmp_path / "calls.sqlite")
        assert resumed.generate(prompts, SETTINGS) == out["r"] and resumed.calls == 0
        assert quick(own_server.url, own_server.alias).generate(prompts[:3], SETTINGS) == out["r"][:3]


def test_server_down_fails_clearly_and_a_rerun_resumes(own_server, tmp_path):
    with FaultProxy(own_server.url) as proxy:
        spec = f"openai:{own_server.alias}@{proxy.url}"
        first = load_llm(spec, cache=tmp_path / "calls.sqlite", backoff=0.05)
        done = first.generate(PROMPTS[:3], SETTINGS)
        own_server.kill()
        with pytest.raises(BackendError, match=r"failed 3 times \(last: HTTP 502.*server is up"):
            load_llm(spec, cache=tmp_path / "calls.sqlite", retries=2, backoff=0.05).generate(PROMPTS, SETTINGS)
        with pytest.raises(BackendError, match="failed 1 times.*Connection refused.*docs/server.md"):
            quick(own_server.url, own_server.alias, retries=0).generate(PROMPTS, SETTINGS)
        own_server.start()
        rerun = load_llm(spec, cache=tmp_path / "calls.sqlite", backoff=0.05)
        assert rerun.generate(PROMPTS, SETTINGS)[:3] == done
        assert rerun.calls == 3 and rerun.hits == 3 and max(proxy.paid.values()) == 1


def test_slow_server_times_out_then_retries(server, proxy):
    expected = quick(server.url, server.alias).generate(PROMPTS[:1], SETTINGS)
    llm = quick(proxy.url, server.alias, timeout=3.0, retries=6)
    llm.check()  # the model check first, so that only completions are held below
    proxy.slow_for, proxy.slow_next = 600.0, 2  # the first two attempts are held past the timeout
    assert llm.generate(PROMPTS[:1], SETTINGS) == expected
    assert 1 + 3 <= llm.attempts <= 1 + 7  # two timed out (more only if a real answer took over 3 s)
    proxy.slow_next = 10
    with pytest.raises(BackendError, match=r"failed 2 times \(last: TimeoutError.*raise timeout"):
        quick(proxy.url, server.alias, timeout=3.0, retries=1, check_model=False).generate(PROMPTS[1:2], SETTINGS)
    proxy.release.set()  # let the held requests go


@pytest.mark.parametrize("code", [500, 503, 429])
def test_errors_for_a_while_are_ridden_out(server, proxy, code):
    expected = quick(server.url, server.alias).generate(PROMPTS[:2], SETTINGS)
    llm = quick(proxy.url, server.alias, max_concurrency=1, retries=4, max_backoff=2.0)
    llm.check()
    proxy.fail_code, proxy.fail_next, proxy.retry_after = code, 3, 1
    start = time.monotonic()
    assert llm.generate(PROMPTS[:2], SETTINGS) == expected
    assert llm.attempts == 1 + 2 + 3
    if code in (429, 503):  # Retry-After (1 s) is followed, above the 0.05 s backoff
        assert time.monotonic() - start >= 3 * 1.0
    proxy.fail_next = 10
    with pytest.raises(BackendError, match=f"failed 3 times .*HTTP {code}"):
        quick(proxy.url, server.alias, retries=2, check_model=False).generate(PROMPTS[2:3], SETTINGS)


def test_a_wrong_model_name_fails_before_any_call_is_paid(server, proxy):
    with pytest.raises(BackendError, match=r"serves \['SmolLM2-135M-Instruct'\], not 'gpt-4o'.*--model_alias"):
        quick(proxy.url, "gpt-4o").generate(PROMPTS, SETTINGS)
    assert proxy.requests == 1 and not proxy.paid  # only the model list was asked for
    # without the check, llama.cpp's server would answer a wrong name with its own model: silently
    silent = quick(proxy.url, "gpt-4o", check_model=False).generate(PROMPTS[:1], SETTINGS)
    assert silent == quick(server.url, server.alias).generate(PROMPTS[:1], SETTINGS)


def test_a_server_without_logprobs_names_the_flag(tmp_path):
    with LlamaServer("smollm2", threads=THREADS, logprobs=False, log=tmp_path / "nolp.log") as srv:
        llm = quick(srv.url, srv.alias, retries=3)
        assert llm.generate(PROMPTS[:1], SETTINGS)  # generation needs no logits
        before = llm.attempts
        with pytest.raises(BackendError, match="keeps no log-probabilities.*--logits_all true"):
            llm.score(PROMPTS[:1], [" 3"])
        assert llm.attempts == before + 1  # a misconfiguration is not retried


def test_without_the_bos_fix_the_misaligned_echo_is_refused(tmp_path):
    # llama-cpp-python gives each echoed token the probability read one position too late unless the prompt
    # starts with BOS (abetlen/llama-cpp-python#1983): the probe catches it before any score is paid
    with LlamaServer("smollm2", threads=THREADS, bos_fix=False, log=tmp_path / "nobos.log") as srv:
        with FaultProxy(srv.url) as proxy:
            llm = quick(proxy.url, srv.alias)
            with pytest.raises(BackendError, match="misaligned log-probabilities.*add_bos_token=bool:true"):
                llm.score(PROMPTS[:2], [" 3", " 7"])
            assert sum(proxy.paid.values()) == 2  # the probe's two requests, no score


def test_the_documented_commands_serve_smollm2_to_tap(tmp_path):
    import re
    import shlex
    import subprocess
    import sys

    from tap.llm.server import free_port, wait_until_up

    doc = (Path(__file__).parents[2] / "docs" / "server.md").read_text()
    start = next(line for line in doc.splitlines() if line.startswith("python -m tap.llm.server"))
    spec = re.search(r"--model (openai:\S+@http://127\.0\.0\.1:8000)", doc).group(1)
    port = free_port()
    argv = [sys.executable, *shlex.split(start.split("#")[0])[1:]]
    argv[argv.index("--port") + 1] = str(port)
    with open(tmp_path / "doc-server.log", "wb") as log:
        proc = subprocess.Popen([*argv, "--threads", str(THREADS)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", 1800, proc)  # a failsafe against a hang, not a time limit
        llm = load_llm(spec.replace(":8000", f":{port}"), cache=tmp_path / "calls.sqlite", backoff=0.05)
        assert llm.generate(PROMPTS[:2], SETTINGS)[0] and llm.score(PROMPTS[:1], [" 3"])[0].n_tokens >= 1
        assert spec.replace(":8000", f":{port}") in (tmp_path / "doc-server.log").read_text()  # what it printed
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
