"""Third-party noise stays out of the output; TaP's own warnings and the library's real errors stay in."""

from __future__ import annotations

import logging
import warnings

from tap.quiet import quiet


def test_library_notices_are_hidden_and_ours_are_kept(monkeypatch):
    monkeypatch.delenv("TAP_VERBOSE", raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        quiet()
        warnings.warn("Metric `SpearmanCorrcoef` will save all targets and predictions in the buffer. For large "
                      "datasets, this may lead to large memory footprint.", UserWarning, stacklevel=2)
        warnings.warn("Found 150 module(s) in eval mode at the start of training.", UserWarning, stacklevel=2)
        warnings.warn("[tap] warning: the task has only 4 search examples", UserWarning, stacklevel=2)
    assert [str(w.message) for w in seen] == ["[tap] warning: the task has only 4 search examples"]


def test_lightning_banners_are_dropped_and_its_other_lines_kept(monkeypatch, caplog):
    monkeypatch.delenv("TAP_VERBOSE", raising=False)
    quiet()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        logger.info("GPU available: False, used: False")
        logger.info("`Trainer.fit` stopped: `max_epochs=1` reached.")
    assert [r.getMessage() for r in caplog.records] == ["`Trainer.fit` stopped: `max_epochs=1` reached."]


def test_tap_verbose_shows_everything(monkeypatch):
    monkeypatch.setenv("TAP_VERBOSE", "1")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        quiet()
        warnings.warn("Found 150 module(s) in eval mode at the start of training.", UserWarning, stacklevel=2)
    assert len(seen) == 1
