import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tap.errors import CacheError
from tap.llm import load_llm
from tap.llm.base import GenerationSettings, Score
from tap.llm.cache import CallCache, call_key
from tap.llm.cached import CachedLLM
from tests.helpers import FakeLLM, fake_logprob, fake_reply

REPO = Path(__file__).resolve().parents[2]
SETTINGS = GenerationSettings(max_new_tokens=50, stop=())


def test_call_key_is_stable_and_distinguishes_parts():
    key = call_key("m", "generate", {"max_new_tokens": 32, "stop": ["\n\n"]}, "prompt")
    assert key == call_key("m", "generate", {"stop": ["\n\n"], "max_new_tokens": 32}, "prompt")
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != call_key("m2", "generate", {"max_new_tokens": 32, "stop": ["\n\n"]}, "prompt")
    assert call_key("m", "score", "ab", "c") != call_key("m", "score", "a", "bc")


def test_put_get_round_trip(tmp_path):
    cache = CallCache(tmp_path / "sub" / "calls.sqlite")
    values = {"a": "text", "b": [-1.5, 3], "c": {"x": [1, 2]}, "d": "ünïcode"}
    cache.put_many(values)
    assert cache.get_many(["a", "b", "c", "d", "missing"]) == values
    assert cache.get_many(["a", "a"]) == {"a": "text"}
    assert cache.get_many([]) == {}
    assert len(cache) == 4
    cache.put_many({"a": "new"})
    assert cache.get_many(["a"]) == {"a": "new"}
    assert len(cache) == 4
    cache.put_many({})
    assert len(cache) == 4


def test_get_many_more_than_one_sql_chunk(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    items = {f"k{i}": i for i in range(1234)}
    cache.put_many(items)
    assert cache.get_many(list(items)) == items


def test_persistence_across_reopen(tmp_path):
    path = tmp_path / "calls.sqlite"
    cache = CallCache(path)
    cache.put_many({"k": ["v", 1]})
    cache.close()
    reopened = CallCache(path)
    assert reopened.get_many(["k"]) == {"k": ["v", 1]}
    assert len(reopened) == 1


def test_in_memory_cache():
    cache = CallCache(None)
    assert cache.path is None
    cache.put_many({"k": 1})
    assert cache.get_many(["k"]) == {"k": 1}


def test_corrupt_file_raises_cache_error_naming_the_file(tmp_path):
    path = tmp_path / "calls.sqlite"
    path.write_bytes(b"this is not an sqlite database\x00\xff" * 200)
    with pytest.raises(CacheError) as err:
        CallCache(path)
    assert str(path) in str(err.value)
    assert "unreadable" in str(err.value)


def test_load_llm_default_cache_lives_in_tap_cache(tap_cache, monkeypatch):
    import tap.llm.hf

    class Stub(FakeLLM):
        def __init__(self, model, **kwargs):
            super().__init__()
            self.name = f"stub-{model}"
            self.kwargs = kwargs

    monkeypatch.setattr(tap.llm.hf, "TransformersLLM", Stub)
    llm = load_llm("m", batch_size=3)
    assert llm.cache.path == tap_cache / "calls.sqlite"
    assert (llm.name, llm.llm.kwargs) == ("stub-m", {"batch_size": 3})
    assert load_llm("m", cache=None).cache.path is None


# --- CachedLLM ---------------------------------------------------------------------------------


def test_cached_generate_counts_calls_and_hits():
    fake = FakeLLM()
    llm = CachedLLM(fake, CallCache(None))
    prompts = ["p1", "p2", "p3"]
    assert llm.generate(prompts, SETTINGS) == [fake_reply(p) for p in prompts]
    assert (llm.calls, llm.hits, fake.generated) == (3, 0, 3)
    assert llm.generate(prompts, SETTINGS) == [fake_reply(p) for p in prompts]
    assert (llm.calls, llm.hits, fake.generated) == (3, 3, 3)  # second identical request: 0 new calls
    assert llm.generate(["p2", "p4"], SETTINGS) == [fake_reply("p2"), fake_reply("p4")]
    assert (llm.calls, llm.hits) == (4, 4)
    assert fake.generate_batches == [["p1", "p2", "p3"], ["p4"]]


def test_generation_settings_are_part_of_the_key():
    fake = FakeLLM()
    llm = CachedLLM(fake, CallCache(None))
    short = GenerationSettings(max_new_tokens=1, stop=())
    assert llm.generate(["p"], SETTINGS) == [fake_reply("p")]
    assert llm.generate(["p"], short) == [fake_reply("p")[:11]]
    assert (llm.calls, llm.hits) == (2, 0)


def test_duplicates_in_one_request_are_paid_once():
    fake = FakeLLM()
    llm = CachedLLM(fake, CallCache(None))
    assert llm.generate(["a", "b", "a", "a"], SETTINGS) == [fake_reply(x) for x in "abaa"]
    assert fake.generate_batches == [["a", "b"]]
    assert (llm.calls, llm.hits) == (2, 2)


def test_duplicates_across_chunks_are_paid_once():
    fake = FakeLLM()
    llm = CachedLLM(fake, CallCache(None), chunk=2)
    assert llm.generate(["a", "b", "c", "a", "b", "d"], SETTINGS) == [fake_reply(x) for x in "abcabd"]
    assert (llm.calls, llm.hits) == (4, 2)
    assert [p for batch in fake.generate_batches for p in batch] == ["a", "b", "c", "d"]


def test_no_empty_backend_call_for_a_chunk_of_duplicates():
    fake = FakeLLM()
    llm = CachedLLM(fake, CallCache(None), chunk=2)
    llm.generate(["a", "b", "a"], SETTINGS)
    assert fake.generate_batches == [["a", "b"]]


def test_cached_score_counts_and_round_trips():
    fake = FakeLLM()
    llm = CachedLLM(fake, CallCache(None))
    prompts, conts = ["p", "p", "q", "p"], ["x", "yy", "x", "x"]
    expected = [Score(fake_logprob(p, c), len(c)) for p, c in zip(prompts, conts)]
    assert llm.score(prompts, conts) == expected
    assert (llm.calls, llm.hits, fake.scored) == (3, 1, 3)
    assert llm.score(prompts, conts) == expected
    assert (llm.calls, llm.hits, fake.scored) == (3, 5, 3)
    assert all(isinstance(s.logprob, float) and isinstance(s.n_tokens, int) for s in llm.score(prompts, conts))


def test_score_and_generate_keys_do_not_collide():
    fake = FakeLLM()
    llm = CachedLLM(fake, CallCache(None))
    llm.generate(["p"], SETTINGS)
    llm.score(["p"], ["x"])
    assert llm.calls == 2


def test_model_name_is_part_of_the_key(tmp_path):
    path = tmp_path / "calls.sqlite"
    a = CachedLLM(FakeLLM(), CallCache(path))
    a.generate(["p"], SETTINGS)
    other = FakeLLM()
    other.name = "fake@bf16"
    b = CachedLLM(other, CallCache(path))
    b.generate(["p"], SETTINGS)
    assert (b.calls, b.hits) == (1, 0)


def test_cache_is_shared_through_the_file(tmp_path):
    path = tmp_path / "calls.sqlite"
    first = CachedLLM(FakeLLM(), CallCache(path))
    first.generate(["a", "b"], SETTINGS)
    first.score(["a"], ["b"])
    first.cache.close()
    fake = FakeLLM()
    second = CachedLLM(fake, CallCache(path))
    assert second.generate(["a", "b"], SETTINGS) == [fake_reply("a"), fake_reply("b")]
    assert second.score(["a"], ["b"]) == [Score(fake_logprob("a", "b"), 1)]
    assert (second.calls, second.hits, fake.generated, fake.scored) == (0, 3, 0, 0)


def test_cached_llm_forwards_name_and_chat():
    fake = FakeLLM()
    llm = CachedLLM(fake, CallCache(None))
    assert (llm.name, llm.has_chat_template) == ("fake", False)
    assert llm.format_chat([{"role": "user", "content": "hi"}]) == "user:hi"


# --- kill and resume ---------------------------------------------------------------------------

TOTAL, CHUNK = 40, 2
PROMPTS = [f"prompt number {i}" for i in range(TOTAL)]

CHILD = textwrap.dedent(
    f"""
    import sys
    from tap.llm.base import GenerationSettings
    from tap.llm.cache import CallCache
    from tap.llm.cached import CachedLLM
    from tests.helpers import FakeLLM

    prompts = [f"prompt number {{i}}" for i in range({TOTAL})]
    llm = CachedLLM(FakeLLM(delay=0.15), CallCache(sys.argv[1]), chunk={CHUNK})
    print("started", flush=True)
    llm.generate(prompts, GenerationSettings(max_new_tokens=50, stop=()))
    print("finished", flush=True)
    """
)


def _rows(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        try:
            return db.execute("SELECT count(*) FROM calls").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_kill_and_resume(tmp_path):
    path = tmp_path / "calls.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        failsafe = time.monotonic() + 1800  # wait on the condition; the failsafe only ends a hang
        while _rows(path) < 3 * CHUNK:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < failsafe, f"the child wrote {_rows(path)} calls in 30 minutes: it hangs"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert b"finished" not in out

    fake = FakeLLM()
    cache = CallCache(path)  # readable after the kill
    done = len(cache)
    assert 3 * CHUNK <= done < TOTAL
    assert done % CHUNK == 0  # whole chunks only: each chunk lands in one transaction
    stored = cache.get_many(
        [call_key("fake", "generate", {"max_new_tokens": 50, "stop": []}, p) for p in PROMPTS[:done]]
    )
    assert sorted(stored.values()) == sorted(fake_reply(p) for p in PROMPTS[:done])

    resumed = CachedLLM(fake, cache, chunk=CHUNK)
    results = resumed.generate(PROMPTS, SETTINGS)
    assert resumed.calls == TOTAL - done
    assert resumed.hits == done
    assert fake.generated == TOTAL - done
    assert [p for batch in fake.generate_batches for p in batch] == PROMPTS[done:]

    uninterrupted = CachedLLM(FakeLLM(), CallCache(None), chunk=CHUNK).generate(PROMPTS, SETTINGS)
    assert results == uninterrupted == [fake_reply(p) for p in PROMPTS]
    assert len(CallCache(path)) == TOTAL


# --- damage (issue: a damaged cache is never served) -----------------------------------------------
def _fill(path, n=40):
    cache = CachedLLM(FakeLLM(), CallCache(path))
    prompts = [f"What is {i} + {i}?" for i in range(n)]
    first = cache.generate(prompts, SETTINGS)
    cache.cache.close()
    return prompts, first


def test_a_changed_digit_in_a_value_is_repaid_and_reported(tmp_path, capsys):
    path = tmp_path / "calls.sqlite"
    prompts, first = _fill(path)
    db = sqlite3.connect(path)
    key, value = db.execute("SELECT key, value FROM calls LIMIT 1").fetchone()
    changed = value.replace(value[1], "Z" if value[1] != "Z" else "Y", 1)  # one character of the stored JSON
    db.execute("UPDATE calls SET value = ? WHERE key = ?", (changed, key))
    db.commit()
    db.close()
    fake = FakeLLM()
    llm = CachedLLM(fake, CallCache(path))
    again = llm.generate(prompts, SETTINGS)
    assert again == first  # the damaged entry was paid again, not served
    assert fake.generated == 1 and llm.calls == 1 and llm.repaid == 1 and llm.cache.damaged == 1
    assert "1 damaged cache entries" in capsys.readouterr().err
    assert CachedLLM(FakeLLM(), CallCache(path)).generate(prompts, SETTINGS) == first  # repaired on disk


def test_broken_json_in_a_value_is_repaid(tmp_path):
    path = tmp_path / "calls.sqlite"
    prompts, first = _fill(path, 5)
    db = sqlite3.connect(path)
    db.execute("UPDATE calls SET value = '{broken', check_ = NULL WHERE rowid = 2")  # no check: a legacy row
    db.commit()
    db.close()
    fake = FakeLLM()
    llm = CachedLLM(fake, CallCache(path))
    assert llm.generate(prompts, SETTINGS) == first and fake.generated == 1 and llm.repaid == 1


def test_rows_without_a_checksum_are_read_as_they_are(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")  # the format before checksums
    db.execute("INSERT INTO calls VALUES ('k', '[1, 2]')")
    db.commit()
    db.close()
    cache = CallCache(path)
    assert cache.get_many(["k"]) == {"k": [1, 2]} and cache.damaged == 0
    cache.put_many({"j": 3})
    assert cache.get_many(["j", "k"]) == {"j": 3, "k": [1, 2]}


def test_garbage_in_a_data_page_gets_a_clear_error(tmp_path):
    path = tmp_path / "calls.sqlite"
    prompts, _ = _fill(path, 400)
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    for p in range(2, len(data) // page):  # every page but the header page, so the file still opens
        data[p * page: p * page + 200] = b"\xde\xad\xbe\xef" * 50
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="is unreadable") as err:
        CachedLLM(FakeLLM(), CallCache(path)).generate(prompts, SETTINGS)
    assert str(path) in str(err.value) and "move it aside" in str(err.value)


def test_cache_in_an_unwritable_folder_says_so(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    monkeypatch.setattr("tap.llm.cache.os.access", lambda p, mode: False)  # root ignores permission bits
    with pytest.raises(CacheError, match="the folder .*ro is not writable") as err:
        CallCache(folder / "calls.sqlite")
    assert "--cache" in str(err.value) and "move it aside" not in str(err.value)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheError, match="is not writable"):
        CallCache(blocker / "sub" / "calls.sqlite")  # a file where a folder should be
