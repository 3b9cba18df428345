"""Every config in configs/ parses through the project's LightningCLI; wrong keys fail clearly."""

from pathlib import Path

import pytest

from tap.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATA_CONFIGS = sorted((CONFIGS / "data").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["train.py"])  # the CLI gets its arguments through args= only


@pytest.mark.parametrize("path", DATA_CONFIGS, ids=lambda p: p.name)
def test_data_config_parses(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--data", str(path), "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "class_path: tap.collection.datamodule.TriplesDataModule" in out


def test_wrong_data_key_is_named(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--data", str(DATA_CONFIGS[0]), "--data.init_args.trajectoriez", "3", "--print_config"])
    assert exit_info.value.code != 0
    assert "trajectoriez" in capsys.readouterr().err


def test_there_are_configs():
    assert DATA_CONFIGS
