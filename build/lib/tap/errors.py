"""Errors a user can act on: each message names the problem and the fix."""


class TapError(Exception):
    """Base class of every error TaP raises on purpose."""


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
