"""Errors a user can act on: each message names the problem and the fix."""


class TapError(Exception):
    """Base class of every error TaP raises on purpose."""


class ConfigError(TapError, ValueError):
    """A setting is invalid (e.g. an unknown loss term in ``loss_scales``); also a ``ValueError``."""


class TaskError(TapError):
    """A task cannot be found, fetched or parsed."""


class ChainError(TapError):
    """A chain is malformed (e.g. empty) or cannot be rendered."""


class EditError(TapError):
    """An edit cannot be applied to a chain; the message says why."""


class CacheError(TapError):
    """The on-disk LLM call cache cannot be read or written."""


class BudgetExhausted(TapError):
    """A search spent its budget of real chain evaluations."""


class BackendError(TapError):
    """A frozen-LLM backend cannot be loaded or called."""


def unknown_loss_terms(unknown: set[str], known: tuple[str, ...]) -> ConfigError:
    """The error for misspelled keys in a system's ``loss_scales``, with the closest known names."""
    import difflib

    hints = [f"{u!r} -> {close[0]!r}" for u in sorted(unknown) if (close := difflib.get_close_matches(u, known, 1))]
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    return ConfigError(f"unknown loss term(s) {sorted(unknown)} in loss_scales{hint}; known: {list(known)}. "
                       "Fix: correct model.init_args.loss_scales in the config.")


def exit_code(command) -> int:
    """Run a command-line entry point's work (``command()``): an int it returns is the exit code (else 0); a
    ``TapError`` becomes its one-line message on stderr and exit code 2, with no traceback.
    """
    import sys

    try:
        code = command()
    except TapError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0
