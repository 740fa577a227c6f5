"""The engine's one error hierarchy.

Every message says what to do about it. The CLI turns these into a one-line error and an exit
code, the language server into a JSON-RPC error or a `window/showMessage`; nothing below the edge
formats errors for a user interface.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose.

    `public` is what a client on another machine is told (the TCP server): the same words,
    unless the full message would tell it something about this machine it has no business
    knowing (whether a path exists, is readable, ...).
    """

    def __init__(self, message: str = "", *, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public if public is not None else message


class ModelError(EngineError):
    """A model file is missing, damaged, or not a model we can run."""


class BackendError(EngineError):
    """A backend could not be found, loaded, or failed while generating."""


class OptionError(EngineError):
    """An option has an unknown name or a value of the wrong kind."""


class PositionError(EngineError):
    """A line/character position lies outside the document."""
