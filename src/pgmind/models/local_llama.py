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
        self._formatter = None

    JUDGE_SYSTEM = "You judge search results. Answer only yes or no."
    JUDGE_PROMPT = "Question: {query}\n\nPassage: {passage}\n\nDoes the passage answer the question?"

    def relevance(self, query: str, passages: list[str], max_passage_tokens: int = 256) -> list[float]:
        """How likely each passage answers the query, by the model's own judgement: the probability
        of "yes" against "no" as its next token (no text is generated).  Chinese and English."""
        import numpy as np
        import llama_cpp
        yes = [self._single_token(w) for w in ("yes", "Yes")]
        no = [self._single_token(w) for w in ("no", "No")]
        out = []
        with self._lock:
            for passage in passages:
                ids = self._llm.tokenize(passage.encode("utf-8"), add_bos=False, special=False)
                if len(ids) > max_passage_tokens:   # the start of a chunk says what it is about
                    passage = self._llm.detokenize(ids[:max_passage_tokens]).decode("utf-8", "ignore")
                prompt = self._format([{"role": "system", "content": self.JUDGE_SYSTEM},
                                       {"role": "user", "content": self.JUDGE_PROMPT.format(query=query, passage=passage)}])
                tokens = self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
                self._llm.reset()
                self._llm.eval(tokens)
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._llm.ctx, -1),
                                               shape=(self._llm.n_vocab(),)).astype(np.float64)
                y, n = np.logaddexp.reduce(logits[yes]), np.logaddexp.reduce(logits[no])
                out.append(float(1.0 / (1.0 + np.exp(n - y))))
        return out

    def _single_token(self, word: str) -> int:
        ids = self._llm.tokenize(word.encode("utf-8"), add_bos=False, special=False)
        return ids[0]

    def _format(self, messages: list[dict]) -> str:
        """The prompt as the model's own chat template writes it (ending where the answer starts)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        if self._formatter is None:
            meta = self._llm.metadata
            template = meta.get("tokenizer.chat_template")
            if not template:
                raise ModelLoadError("this GGUF has no chat template: it cannot judge relevance")
            eos = self._llm.detokenize([self._llm.token_eos()]).decode("utf-8", "ignore")
            bos = self._llm.detokenize([self._llm.token_bos()]).decode("utf-8", "ignore")
            self._formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        return self._formatter(messages=messages).prompt

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
