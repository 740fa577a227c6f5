"""fimble's engine: context → prompt → backend → postprocessing. Imports nothing heavy."""

from .config import Settings
from .errors import BackendError, EngineError, ModelError, OptionError, PositionError
from .service import CompletionRequest, CompletionResult, CompletionService

__all__ = [
    "BackendError",
    "CompletionRequest",
    "CompletionResult",
    "CompletionService",
    "EngineError",
    "ModelError",
    "OptionError",
    "PositionError",
    "Settings",
]
