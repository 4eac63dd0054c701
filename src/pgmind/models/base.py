"""Provider base classes: one required method each; validation, ordering and batching live here once."""
from __future__ import annotations

import math
import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import InputTooLongError, InvalidRequestError

INPUT_TYPES = ("query", "document")
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def estimate_tokens(text: str) -> int:
    """A close estimate for models whose tokenizer we do not have: one token per CJK character,
    about four characters per token otherwise."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


def check_text(value, where: str, max_chars: int | None = None) -> str:
    """A text that can travel on: a str, valid UTF-8 (no lone surrogate, which JSON's \\ud800 escapes
    can carry and tokenizers and PostgreSQL choke on), and not over the length limit."""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where} is not a text", hint="send strings")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidRequestError(f"{where} has a lone surrogate (U+{ord(value[e.start]):04X}) at position {e.start}",
                                  hint="send valid Unicode: a surrogate pair, not half of one") from None
    if max_chars is not None and len(value) > max_chars:
        raise InvalidRequestError(f"{where} has {len(value)} characters; the limit is {max_chars}",
                                  hint="split it (a vectorizer chunks for you); PGMIND_MAX_INPUT_CHARS sets the limit")
    return value


def normalize_input_type(value: str | None) -> str:
    v = (value or "query").lower()
    if v in ("passage", "document", "doc", "search_document"):
        return "document"
    if v in ("query", "search_query"):
        return "query"
    raise InvalidRequestError(f"unknown input_type {value!r}", hint="input_type is 'query' or 'document'")


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


@dataclass
class ChatDelta:
    """One piece of a streamed answer; the last one carries finish_reason and usage."""
    content: str = ""
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class LocalEmbeddingModel(ABC):
    """A model that runs in this process. Implement ``embed_batch``; the base validates the input,
    sorts by length to cut padding, splits into batches and restores the input order."""

    dimensions: int = 0
    max_tokens: int | None = None
    batch_size: int = 32              # texts per forward pass, at most
    max_batch_tokens: int = 8192      # padded tokens per forward pass, at most (longest × count)

    @abstractmethod
    def embed_batch(self, texts: list[str], input_type: str) -> np.ndarray:
        """Embed texts (already validated); returns float32 (n, dimensions), L2-normalised."""

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        """Cut text to about max_tokens (subclasses with a tokenizer may do better)."""
        while self.count_tokens(text) > max_tokens and text:
            text = text[: max(1, int(len(text) * max_tokens / self.count_tokens(text) * 0.95))]
        return text

    def check(self, texts: list[str], truncate: bool = False) -> tuple[list[str], int]:
        """Validate; returns the texts to embed (truncated if asked) and their token count."""
        out, tokens = [], 0
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidRequestError(f"input {i} is not a string", hint="send texts, not token ids")
            check_text(t, f"input {i}")
            if not t.strip():
                raise InvalidRequestError(f"input {i} is empty",
                                          hint="pass NULL to get NULL, or filter out empty texts")
            n = self.count_tokens(t)
            if self.max_tokens and n > self.max_tokens:
                if not truncate:
                    raise InputTooLongError(
                        f"input {i} has {n} tokens; the model takes at most {self.max_tokens}")
                t = self.truncate(t, self.max_tokens)
                n = self.count_tokens(t)
            out.append(t)
            tokens += n
        return out, tokens

    def embed(self, texts: list[str], input_type: str = "query", truncate: bool = False,
              validated: bool = False) -> Embeddings:
        """Embed in input order. ``validated``: the texts already passed :meth:`check`."""
        texts, tokens = (texts, 0) if validated else self.check(texts, truncate)
        result = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for idx in self.pack(texts):
            result[idx] = self.embed_batch([texts[i] for i in idx], input_type)
        return Embeddings(result, tokens)

    def pack(self, texts: list[str]) -> list[list[int]]:
        """Batches of indices: longest first (similar lengths together waste little padding),
        bounded by ``batch_size`` texts and ``max_batch_tokens`` padded tokens."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in order:
            n = estimate_tokens(texts[i])
            longest_if_added = max(longest, n)
            if current and (len(current) >= self.batch_size
                            or longest_if_added * (len(current) + 1) > self.max_batch_tokens):
                batches.append(current)
                current, longest_if_added = [], n
            current.append(i)
            longest = longest_if_added
        if current:
            batches.append(current)
        return batches


class LocalChatModel(ABC):
    """A chat model in this process. Implement ``stream``; ``chat`` is built on it."""

    context: int = 4096

    @abstractmethod
    def stream(self, messages: list[dict], options: dict) -> Iterator[ChatDelta]:
        """Yield the answer piece by piece; the last delta has finish_reason and usage."""

    def chat(self, messages: list[dict], options: dict, cancel: threading.Event | None = None) -> ChatResult:
        """The whole answer.  ``cancel`` set (the caller went away) stops the generation early."""
        parts, last = [], ChatDelta()
        stream = self.stream(messages, options)
        try:
            for delta in stream:
                parts.append(delta.content)
                last = delta
                if cancel is not None and cancel.is_set():
                    last = ChatDelta("", "cancelled")
                    break
        finally:
            stream.close()     # ends the model's generation now, not when it would have finished
        return ChatResult("".join(parts), last.finish_reason or "stop", last.input_tokens or 0,
                          last.output_tokens or 0)


CHAT_OPTIONS = {"temperature": float, "top_p": float, "max_tokens": int, "seed": int, "stop": (str, list),
                "presence_penalty": float, "frequency_penalty": float, "repeat_penalty": float, "top_k": int}


def check_chat_options(options: dict) -> dict:
    """Keep the generation options we understand, with the right types; reject wrong types clearly."""
    out = {}
    if "max_completion_tokens" in options and "max_tokens" not in options:
        options = {**options, "max_tokens": options["max_completion_tokens"]}
    for key, typ in CHAT_OPTIONS.items():
        if options.get(key) is None:
            continue
        value = options[key]
        if typ in (float, int) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidRequestError(f"option {key} must be a number, got {value!r}")
        if typ is int and int(value) != value:
            raise InvalidRequestError(f"option {key} must be an integer, got {value!r}")
        if typ in (float, int) and not math.isfinite(value):
            raise InvalidRequestError(f"option {key} must be a finite number, got {value!r}")
        out[key] = typ(value) if typ in (float, int) else value
    stop = out.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 16
                                                           and all(isinstance(x, str) for x in stop))):
        raise InvalidRequestError(f"option stop must be a text or a list of up to 16 texts, got {stop!r}"[:200])
    if "max_tokens" in out and out["max_tokens"] < 1:
        raise InvalidRequestError("option max_tokens must be at least 1")
    return out


def check_messages(messages) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list of {role, content} objects",
                                  hint='e.g. [{"role": "user", "content": "hi"}]')
    out = []
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
            raise InvalidRequestError(f"message {i} has no valid role",
                                      hint="role is one of system, user, assistant, tool")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content
                              if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
        if not isinstance(content, str):
            raise InvalidRequestError(f"message {i} has no text content", hint='each message needs "content": "<text>"')
        check_text(content, f"message {i}")
        out.append({"role": m["role"], "content": content})
    return out


class LocalImageModel(ABC):
    """An image model in this process. Implement ``embed_images`` (PIL images → L2-normalised
    float32 (n, dimensions)); a model with a text tower (CLIP) also implements ``embed_texts``
    into the same space; an image classifier implements ``classify``."""

    dimensions: int = 0
    batch_size: int = 16
    labels: list[str] | None = None

    @abstractmethod
    def embed_images(self, images: list) -> np.ndarray:
        ...

    has_text_tower = False

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        raise InvalidRequestError("this image model has no text tower: it cannot place texts among its images",
                                  hint="search its images by their labels and text (ai.search_images does), "
                                       "or register a CLIP-family model")

    def classify(self, images: list, k: int = 5) -> list[list[tuple[str, float]]]:
        return [[] for _ in images]

    def embed_and_label(self, images: list, k: int = 5) -> tuple[np.ndarray, list[list[tuple[str, float]]]]:
        """Vectors and top-k labels; a classifier overrides it to do both in one forward pass."""
        return self.embed_images(images), self.classify(images, k)
