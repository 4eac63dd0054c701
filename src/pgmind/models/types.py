"""What crosses between the model service, the hub, the providers and the local backends: the
results of a model call, and whom the call running now is for."""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CALLER", "ChatDelta", "ChatResult", "Embeddings"]

# Whom the model call running now is for (the database role, else the front end; the model server sets
# it per call).  What a cache keeps for one caller, another caller must not find faster by timing.
CALLER: ContextVar[str] = ContextVar("pgmind_caller", default="")


@dataclass
class Embeddings:
    vectors: np.ndarray           # (n, dim) float32, in input order
    input_tokens: int = 0
    # an image classifier's top labels per image, when they came from the same forward pass
    labels: list[list[tuple[str, float]]] | None = None


@dataclass
class ChatResult:
    content: str
    finish_reason: str = "stop"
    input_tokens: int = 0
    output_tokens: int = 0
    # OpenAI's shapes: [{id, type: function, function: {name, arguments (a JSON text)}}]
    tool_calls: list[dict] | None = None
    # [{token, logprob, bytes, top_logprobs: [...]}] per generated token, when asked for
    logprobs: list[dict] | None = None


def chat_completion(model_id: str, result: ChatResult) -> dict:
    """A result in OpenAI's chat completion shape (model, choices, usage): what /v1/chat/completions
    answers and what ai.call_model answers for a local chat model."""
    message: dict = {"role": "assistant", "content": result.content if result.content or not result.tool_calls else None}
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
    return {"model": model_id,
            "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason,
                         "logprobs": {"content": result.logprobs} if result.logprobs is not None else None}],
            "usage": {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens,
                      "total_tokens": (result.input_tokens or 0) + (result.output_tokens or 0)}}


@dataclass
class ChatDelta:
    """One piece of a streamed answer; the last one carries finish_reason and usage."""
    content: str = ""
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    tool_calls: list[dict] | None = None
    logprobs: list[dict] | None = None
