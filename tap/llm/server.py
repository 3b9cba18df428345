"""llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``) on a GGUF TaP already provisions.

``python -m tap.llm.server`` finds (or downloads) SmolLM2's GGUF, serves it on loopback and prints the
``--model`` spec to point TaP at it; ``LlamaServer`` does the same from Python (tests, benchmarks) and stops
the server on exit. Install the server with ``pip install -e '.[server]'`` (a native build: see
``docs/server.md``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tap.errors import BackendError
from tap.paths import cache_dir

DEFAULT_ALIAS = {"smollm2": "SmolLM2-135M-Instruct", "qwen2.5-coder-0.5b": "Qwen2.5-Coder-0.5B-Instruct"}


def server_installed() -> bool:
    """Whether ``llama_cpp.server`` can be imported (the ``server`` extra is installed)."""
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("fastapi") is not None


def gguf_path(model: str = "smollm2") -> Path:
    """The GGUF of ``model``: an offline model's alias (downloaded into the cache on first use, never
    installed) or a path to a ``.gguf`` file.
    """
    from tap.llm.provision import OFFLINE_MODELS, _download_gguf

    if model in OFFLINE_MODELS:
        root = cache_dir() / "models"
        root.mkdir(parents=True, exist_ok=True)
        return _download_gguf(OFFLINE_MODELS[model], root)
    path = Path(model)
    if path.suffix != ".gguf" or not path.is_file():
        raise BackendError(f"{model!r} is neither an offline model ({', '.join(sorted(OFFLINE_MODELS))}) nor a "
                           ".gguf file. Fix: pass --model smollm2 or the path of a GGUF file.")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: makes llama-cpp-python's echoed log-probabilities right: it gives each echoed prompt token the probability
#: read one position too late (abetlen/llama-cpp-python#1983) unless the prompt starts with a BOS token, whose
#: position it skips; with BOS added to every prompt (generation too, so both modes see the same context)
#: each token gets the probability of itself after the tokens before it
BOS_FIX = ("--kv_overrides", "tokenizer.ggml.add_bos_token=bool:true")


def server_command(gguf: str | Path, port: int, alias: str, host: str = "127.0.0.1", threads: int | None = None,
                   n_ctx: int = 2048, logprobs: bool = True, bos_fix: bool = True) -> list[str]:
    """The command line that serves ``gguf`` as ``alias`` on ``host:port``. ``logprobs``: keep every
    token's logits (``--logits_all true``), which TaP's scoring (echo + logprobs) needs; ``bos_fix``: add
    ``BOS_FIX``, without which llama-cpp-python's echoed log-probabilities are misaligned.
    """
    threads = threads or max(1, os.cpu_count() or 1)
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
            "--host", host, "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
            "--n_threads_batch", str(threads), "--logits_all", "true" if logprobs else "false",
            *(BOS_FIX if bos_fix else ()), "--verbose", "false"]


def wait_until_up(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``<url>/v1/models`` until it answers (at most ``timeout`` seconds); fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise BackendError(f"the model server exited with code {proc.returncode} before answering at {url}.")
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise BackendError(f"the model server at {url} did not answer within {timeout:.0f} s.")
        time.sleep(0.2)


class LlamaServer:
    """llama.cpp's server on ``gguf`` as a child process on loopback; a context manager that stops it.

    Args:
        model: an offline model's alias (``smollm2``) or a ``.gguf`` path.
        port: the port (default: a free one).
        alias: the model name the server answers to (default: the model's usual name).
        threads: CPU threads (default: every core).
        logprobs: start it with ``--logits_all true`` (needed for scoring).
        bos_fix: start it with ``BOS_FIX`` (needed for right scores).
        log: file that takes the server's output (default: discarded).
    """

    def __init__(self, model: str = "smollm2", port: int | None = None, alias: str | None = None,
                 threads: int | None = None, logprobs: bool = True, bos_fix: bool = True,
                 log: str | Path | None = None) -> None:
        if not server_installed():
            raise BackendError("llama-cpp-python's server is not installed. Fix: pip install -e '.[server]' "
                               "(builds llama.cpp: see docs/server.md).")
        self.gguf = gguf_path(model)
        self.alias = alias or DEFAULT_ALIAS.get(model, self.gguf.stem)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = server_command(self.gguf, self.port, self.alias, threads=threads, logprobs=logprobs,
                                      bos_fix=bos_fix)
        self.log = Path(log) if log else None
        self.proc: subprocess.Popen | None = None

    @property
    def spec(self) -> str:
        """The ``--model`` value that points TaP at this server."""
        return f"openai:{self.alias}@{self.url}"

    def start(self, timeout: float = 900.0) -> LlamaServer:
        """Start the server and wait until it answers (``timeout``: a failsafe against a hang, generous on purpose)."""
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        if out is not subprocess.DEVNULL:
            out.close()  # the child holds its own descriptor
        try:
            wait_until_up(self.url, timeout, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m tap.llm.server``: serve an offline model's GGUF with llama.cpp on loopback, in the foreground."""
    p = argparse.ArgumentParser(prog="python -m tap.llm.server", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2", help="an offline model (smollm2, qwen2.5-coder-0.5b) or a .gguf path")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback only)")
    p.add_argument("--alias", default=None, help="the model name the server answers to")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    p.add_argument("--no-logprobs", action="store_true", help="skip --logits_all (scoring will then fail)")
    args = p.parse_args(argv)
    if not server_installed():
        sys.exit("llama-cpp-python's server is not installed. Fix: pip install -e '.[server]' (see docs/server.md).")
    gguf = gguf_path(args.model)
    alias = args.alias or DEFAULT_ALIAS.get(args.model, gguf.stem)
    print(f"[tap] serving {gguf.name}; point TaP at it with --model openai:{alias}@http://{args.host}:{args.port}",
          file=sys.stderr, flush=True)
    cmd = server_command(gguf, args.port, alias, args.host, args.threads, logprobs=not args.no_logprobs)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
