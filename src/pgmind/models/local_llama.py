"""GGUF chat models through llama.cpp (llama-cpp-python). The model's own chat template formats
the messages. llama.cpp is not thread-safe: one generation at a time per model."""
from __future__ import annotations

import os
import threading
from typing import Iterator

from ..errors import InputTooLongError, ModelLoadError
from .base import ChatDelta, LocalChatModel


class LlamaCppChat(LocalChatModel):
    def __init__(self, gguf_path: str, *, context: int = 4096, threads: int | None = None):
        if not os.path.exists(gguf_path):
            raise ModelLoadError(f"GGUF file {gguf_path} does not exist",
                                 hint="check the model's options.path, or run scripts/setup.sh")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelLoadError("llama-cpp-python is not installed",
                                 hint="pip install 'pgmind[local]'") from None
        self.context = context
        self._llm = Llama(model_path=gguf_path, n_ctx=context, n_threads=threads or os.cpu_count(),
                          verbose=False)
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def stream(self, messages: list[dict], options: dict) -> Iterator[ChatDelta]:
        prompt_tokens = sum(self.count_tokens(m["content"]) + 4 for m in messages) + 3
        max_tokens = options.get("max_tokens") or 512
        if prompt_tokens >= self.context:
            raise InputTooLongError(f"the messages have about {prompt_tokens} tokens; the model's window is {self.context}",
                                    hint="shorten the messages or the retrieved context")
        max_tokens = min(max_tokens, self.context - prompt_tokens)
        kwargs = {k: options[k] for k in ("temperature", "top_p", "top_k", "seed", "stop", "presence_penalty",
                                          "frequency_penalty", "repeat_penalty") if k in options}
        kwargs.setdefault("temperature", 0.2)
        with self._lock:
            # evaluate every prompt from scratch: reusing the cached prefix of the previous prompt
            # changes the floating-point path, and with it greedy (temperature 0) answers
            self._llm.reset()
            pieces: list[str] = []
            finish = "stop"
            for chunk in self._llm.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                                          stream=True, **kwargs):
                choice = chunk["choices"][0]
                piece = choice.get("delta", {}).get("content") or ""
                if piece:
                    pieces.append(piece)
                    yield ChatDelta(piece)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
            yield ChatDelta("", finish, prompt_tokens, self.count_tokens("".join(pieces)))
