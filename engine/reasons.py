"""The words for how things ended: one set, used by the backends, the service, the server, the
CLI and the eval (they are `str`s, so they compare and serialize as their values)."""

from __future__ import annotations

from enum import StrEnum


class StopReason(StrEnum):
    """Why a backend stopped generating (GenerationStats.stop_reason)."""

    EOS = "eos"  # an end-of-generation token
    SEQUENCE = "stop"  # a stop sequence, or the engine's `stop_when` (the completion left its block)
    MAX_TOKENS = "max_tokens"
    TIME_BUDGET = "time_budget"
    # The first lines are usable and the editor is waiting: they are answered now, and the rest
    # is decoded after (GenerationRequest.answer_after_s, CompletionService.rest_of_answer).
    EARLY = "early"
    CANCELLED = "cancelled"
    PREFILLED = "prefilled"  # a warm-up: the prompt was evaluated, nothing generated


class Outcome(StrEnum):
    """What a completion request came to, beside the stop reasons (CompletionResult.reason, and
    the outcomes counted in fimble/status)."""

    SHOWN = "shown"  # text went to the editor (status only: the result carries its stop reason)
    EMPTY = "empty"  # the model wrote nothing worth showing
    CACHE = "cache"  # answered from a cache (exact prompt or type-through)
    CANCELLED = "cancelled"
    ERROR = "error"


FILTERED = "filtered:"  # + the postprocessing rule that emptied the completion


def filtered(rule: str) -> str:
    return FILTERED + rule


def is_filtered(reason: str) -> bool:
    return reason.startswith(FILTERED)


__all__ = ["FILTERED", "Outcome", "StopReason", "filtered", "is_filtered"]
