"""A provider: one class that owns a kind of model service — its default URL, its endpoints and
how each operation (embed, chat, rerank, embed_images, a raw call) is sent and read.  The model
hub picks the class by the registration's provider name (``providers.PROVIDERS``); nothing else
dispatches on that name.  An operation a provider does not have is a clear 400, never a guess."""
from __future__ import annotations

from typing import TYPE_CHECKING, AsyncIterator, ClassVar

from ...errors import InvalidRequestError
from ..spec import ModelSpec
from ..types import ChatDelta, ChatResult, Embeddings
from .transport import Endpoint

if TYPE_CHECKING:
    from ..hub import ModelHub


class Provider:
    name: ClassVar[str]
    description: ClassVar[str]
    default_url: ClassVar[str | None] = None
    # what ai.call_model appends to the registered URL, per model type (the provider's own route)
    call_paths: ClassVar[dict[str, str]] = {}
    # whether create_model asks the model for its dimension before it registers it
    probe: ClassVar[bool] = True
    # whether its models run in this process (no URL, no key; the worker embeds with them itself)
    in_process: ClassVar[bool] = False
    # chat features beyond plain text generation that its chat models take (models/validation.py
    # FEATURE_OPTIONS): tools, response_format, logprobs, logit_bias, images.  Asking a provider for
    # one it lacks is a 400, never an option silently dropped.
    chat_features: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, spec: ModelSpec, hub: "ModelHub"):
        self.spec, self.hub = spec, hub

    # -- helpers ------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return (self.spec.url or self.default_url or "").rstrip("/")

    def endpoint(self, path: str = "", headers: dict | None = None) -> Endpoint:
        s = self.hub.settings
        extra = self.spec.options.get("headers") or {}
        if not isinstance(extra, dict):
            raise InvalidRequestError(f"model {self.spec.model_id}: options.headers must be a JSON object",
                                      hint='e.g. options => \'{"headers": {"X-Tenant": "shop"}}\'')
        return Endpoint(self.base + path, {**(headers or {}), **extra,
                                           **self.spec.auth_headers(self.hub.transport.secret_env)},
                        self.spec.timeout or s.request_timeout, s.max_retries)

    def _cannot(self, what: str) -> InvalidRequestError:
        return InvalidRequestError(f"model {self.spec.model_id} (provider {self.name}) cannot {what}",
                                   hint="call it with ai.call_model, which uses its input and output functions, "
                                        "or pick a model that can (select * from ai.models)")

    # -- operations ---------------------------------------------------------------------------
    async def embed(self, texts: list[str], input_type: str, truncate: bool) -> Embeddings:
        """Texts into vectors (an image model with a text tower: into its image space)."""
        raise self._cannot("embed texts")

    async def embed_images(self, images: list[bytes]) -> Embeddings:
        """Image files (the bytes of a JPEG, PNG, …) into vectors."""
        raise self._cannot("embed images")

    async def has_text_tower(self) -> bool:
        """Whether the image model places texts among its images (CLIP-like)."""
        return False

    async def label_names(self) -> list[str]:
        """The names an image classifier gives (empty for models that do not label)."""
        return []

    async def classify_images(self, images: list[bytes], k: int) -> list[list[tuple[str, float]]]:
        raise self._cannot("label images")

    async def chat(self, messages: list[dict], options: dict, cancel=None) -> ChatResult:
        raise self._cannot("chat")

    async def stream(self, messages: list[dict], options: dict) -> AsyncIterator[ChatDelta]:
        """Providers that cannot stream give the whole answer as one piece."""
        result = await self.chat(messages, options)
        yield ChatDelta(result.content, result.finish_reason, result.input_tokens, result.output_tokens,
                        result.tool_calls, result.logprobs)

    async def rerank(self, query: str, documents: list[str]) -> list[float]:
        raise self._cannot("rerank")

    async def call(self, body, headers: dict):
        """ai.call_model: send the body the model's input function built, with the model's key."""
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise InvalidRequestError("the header function must return a JSON object of strings")
        ep = self.endpoint(self.call_paths.get(self.spec.model_type, ""), headers)
        return await self.hub.transport.post_json(ep, body)
