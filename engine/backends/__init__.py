"""Backends: one interface (`Backend`), one registry.

Built-in backends register exactly as a third-party package would: through the `fimble.backends`
entry-point group in pyproject.toml, naming a `Backend` subclass. Nothing is imported until a
backend is asked for by name, so `import engine` stays light.
"""

from __future__ import annotations

from importlib import metadata

from ..errors import BackendError
from .base import (
    Backend,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    StopMatcher,
)

ENTRY_POINT_GROUP = "fimble.backends"
_registered: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend], name: str | None = None) -> type[Backend]:
    """Register a Backend subclass under `name` (default: `cls.name`); usable as a decorator."""
    _registered[name or cls.name] = cls
    return cls


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> list[str]:
    return sorted({*_registered, *_entry_points()})


def get_backend_class(name: str) -> type[Backend]:
    """The Backend class registered as `name`; an unknown name lists the known ones."""
    if name in _registered:
        return _registered[name]
    entry = _entry_points().get(name)
    if entry is None:
        known = ", ".join(available_backends()) or "none (is fimble installed?)"
        raise BackendError(f"unknown backend {name!r}; known backends: {known}")
    try:
        cls = entry.load()
    except ImportError as exc:
        raise BackendError(f"backend {name!r} could not be imported ({exc}); is its extra installed?") from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendError(f"entry point {entry.value!r} for backend {name!r} is not a Backend subclass")
    _registered[name] = cls
    return cls


__all__ = [
    "Backend",
    "GenerationRequest",
    "GenerationResult",
    "GenerationStats",
    "StopMatcher",
    "available_backends",
    "get_backend_class",
    "register_backend",
]
