"""Prompt prefixes read once: llama.cpp's KV state at fixed points of a prompt, kept so that the next
prompt starting the same way does not read that part again.

RAG asks its chat model up to three times per question (topic check, expansion, answer), and each
prompt opens with the chat template's header and an instruction line that do not change between
questions (20–50 of a 60-token prompt); a reranker's prompts repeat the question for every passage.

Two points of a prompt are kept: where its last message's text starts, and the end of that text's
first line.  A prompt is read in one go (after the longest point kept earlier, if any), and its
state at each point is kept afterwards, by cutting the KV back to it: reading in pieces to keep them
cost ~0.3 s a piece on 2 cores.  Each caller (database role) has prefixes of its own: a prompt
another role sent must not come back faster for one that guesses it.

That a restored prefix gives the same bits as reading the whole prompt relies on llama.cpp's CPU
kernels computing a token's row the same whatever else is in its batch; the tests check it, answers
and logprobs bit for bit, for the build this machine loads.
"""
from __future__ import annotations

import ctypes
import re
import threading
from collections import OrderedDict
from typing import Callable

from ..types import CALLER

MAX_BYTES = 64 << 20     # ~28 KB of KV per token for qwen-1.5b: ~2,300 tokens of prefixes
MAX_PREFIX = 512         # a first line longer than this is not an instruction that repeats


def cut_points(tokenize: Callable[[str], list[int]], prompt: str, tokens: list[int], last_text: str | None) -> list[int]:
    """Token counts where the prompt's pieces end (ascending, each < len(tokens)): where the last
    message's text starts, and after its first line break(s).  A point where the prompt's tokens do
    not split (a token spanning it) is left out."""
    if not last_text:
        return []
    start = prompt.rfind(last_text)
    if start < 0:
        return []
    chars = [start]
    line = re.search(r"\n+", last_text)
    if line:
        chars.append(start + line.end())
    out: list[int] = []
    for c in chars:
        head = tokenize(prompt[:c])
        n = len(head)
        if 0 < n < len(tokens) and n <= MAX_PREFIX and (not out or n > out[-1]) and tokens[:n] == head:
            out.append(n)
    return out


class PrefixStates:
    """One model's cached prefix states (sequence 0's KV), least recently used dropped first."""

    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self._states: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._guard = threading.Lock()
        self.hits = 0
        self.misses = 0

    def restore(self, llm, tokens: list[int], cuts: list[int]) -> int:
        """Reset `llm` and give it the state of the longest cut of `tokens` kept earlier; the
        number of tokens it now holds (0 when none was kept).  The caller holds the model's lock."""
        import llama_cpp
        llm.reset()
        for n in reversed(cuts):
            state = self._get(self._key(tokens, n))
            if state is None:
                continue
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
            if llama_cpp.llama_state_seq_set_data(llm.ctx, buf, len(state), 0) == len(state):
                llm.n_tokens = n
                llm.input_ids[:n] = tokens[:n]
                self.hits += 1
                return n
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        self.misses += bool(cuts)
        return 0

    def keep(self, llm, tokens: list[int], cuts: list[int], restored: int) -> None:
        """After `llm` has read the prompt (and perhaps written after it), keep its state at each cut
        past `restored` not kept yet: the KV cut back to that point, longest first, so nothing is
        read twice.  `llm` is left holding the shortest of them; the next prompt resets it."""
        import llama_cpp
        if self.max_bytes <= 0:
            return
        for n in reversed(cuts):
            if n <= restored or n > llm.n_tokens or self._get(self._key(tokens, n)) is not None:
                continue
            llm._ctx.kv_cache_seq_rm(-1, n, -1)
            llm.n_tokens = n
            size = llama_cpp.llama_state_seq_get_size(llm.ctx, 0)
            buf = (ctypes.c_uint8 * size)()
            if llama_cpp.llama_state_seq_get_data(llm.ctx, buf, size, 0) == size:
                self._put(self._key(tokens, n), bytes(buf))

    @staticmethod
    def _key(tokens: list[int], n: int) -> tuple:
        return (CALLER.get(), *tokens[:n])

    def _get(self, key: tuple) -> bytes | None:
        with self._guard:
            state = self._states.get(key)
            if state is not None:
                self._states.move_to_end(key)
            return state

    def _put(self, key: tuple, state: bytes) -> None:
        if len(state) > self.max_bytes:
            return
        with self._guard:
            old = self._states.pop(key, None)
            self._bytes -= len(old) if old else 0
            self._states[key] = state
            self._bytes += len(state)
            while self._bytes > self.max_bytes:
                _, dropped = self._states.popitem(last=False)
                self._bytes -= len(dropped)

    def stats(self) -> dict:
        with self._guard:
            return {"entries": len(self._states), "bytes": self._bytes, "hits": self.hits, "misses": self.misses}
