"""A provider: one class that owns a kind of model service — its default URL, its endpoints and
how each operation (embed, chat, rerank, embed_images, a raw call) is sent and read.  The model
hub picks the class by the registration's provider name (``providers.PROVIDERS``); nothing else
dispatches on that name.  An operation a provider does not have is a clear 400, never a guess.

A provider gets its registration (``spec``) and a small context: the settings, the transport and,
for the models of this process, the local loader — not the hub."""
from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, ClassVar

from ...errors import InvalidRequestError, ModelLoadError
from ..spec import ModelSpec
from ..types import ChatDelta, ChatResult, Embeddings
from .transport import Endpoint, Transport

if TYPE_CHECKING:
    from ...config import Settings


async def _no_local_models(spec: ModelSpec) -> Any:
    raise ModelLoadError(f"model {spec.model_id}: local models are not loaded here",
                         hint="run it through the model server (pgmind serve), whose hub loads local models")


@dataclass(frozen=True)
class ProviderContext:
    """What a provider may use.  The hub makes one and hands it to every provider it creates; a
    test or a script makes its own (``ProviderContext(settings, Transport())`` for remote ones)."""
    settings: "Settings"        # request_timeout and max_retries, for every endpoint
    transport: Transport        # the one HTTP client: retries, the outbound allow-list, secret_env
    # a local model, loaded once per process (an embedding or image model behind its batcher)
    local: Callable[[ModelSpec], Awaitable[Any]] = _no_local_models
    chat_executor: Executor | None = None     # the threads local chat models and rerankers run in


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

    def __init__(self, spec: ModelSpec, context: ProviderContext):
        self.spec, self.context = spec, context

    # -- helpers ------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return (self.spec.url or self.default_url or "").rstrip("/")

    def endpoint(self, path: str = "", headers: dict | None = None) -> Endpoint:
        s = self.context.settings
        extra = self.spec.options.get("headers") or {}
        if not isinstance(extra, dict):
            raise InvalidRequestError(f"model {self.spec.model_id}: options.headers must be a JSON object",
                                      hint='e.g. options => \'{"headers": {"X-Tenant": "shop"}}\'')
        return Endpoint(self.base + path, {**(headers or {}), **extra,
                                           **self.spec.auth_headers(self.context.transport.secret_env)},
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
        return await self.context.transport.post_json(ep, body)
