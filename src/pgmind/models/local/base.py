"""The local backends' base classes: one required method each; validation, ordering and batching
live here once."""
from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from typing import Iterator

import numpy as np

from ...errors import InputTooLongError, InvalidRequestError
from ..types import ChatDelta, ChatResult, Embeddings
from ..validation import check_text

_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def estimate_tokens(text: str) -> int:
    """A close estimate for models whose tokenizer we do not have: one token per CJK character,
    about four characters per token otherwise."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


# Padded tokens per forward pass for a transformer that pads a batch to its longest text, on a CPU:
# passes of texts of similar lengths within this budget made the same vectors 1.45x faster for
# all-MiniLM-L6-v2 and 1.2x for e5-small than passes of 32 and 16 (manual paragraphs are 37% padding
# in a batch of 32; docs/benchmarks.md).  A GPU wants big passes: the default above.
CPU_BATCH_TOKENS = 1024


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

    def count_tokens_many(self, texts: list[str]) -> list[int]:
        """count_tokens of each; a model with a tokenizer that reads a batch at once overrides it."""
        return [self.count_tokens(t) for t in texts]

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
        for i, (t, n) in enumerate(zip(texts, self.count_tokens_many(texts))):
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

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Each text's length in tokens, for packing batches: an estimate here; a model that kept
        the counts of its length check returns those."""
        return [estimate_tokens(t) for t in texts]

    def pack(self, texts: list[str]) -> list[list[int]]:
        """Batches of indices: longest first (similar lengths together waste little padding),
        bounded by ``batch_size`` texts and ``max_batch_tokens`` padded tokens."""
        lengths = self.token_lengths(texts)
        order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in order:
            n = lengths[i]
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
        parts, last, calls, logprobs = [], ChatDelta(), [], []
        stream = self.stream(messages, options)
        try:
            for delta in stream:
                parts.append(delta.content)
                calls += delta.tool_calls or []
                logprobs += delta.logprobs or []
                last = delta
                if cancel is not None and cancel.is_set():
                    last = ChatDelta("", "cancelled")
                    break
        finally:
            stream.close()     # ends the model's generation now, not when it would have finished
        return ChatResult("".join(parts), last.finish_reason or "stop", last.input_tokens or 0,
                          last.output_tokens or 0, calls or None, logprobs if options.get("logprobs") else None)



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
