"""Replies of local chat models to greedy calls, kept per caller, so that the same question is not
translated (expanded, topic-checked) twice.

Query understanding asks the chat model before every search of a question in the other language
(pgmind.rag.query): ~0.9 s on 2 cores for the 0.5B model's translation, 20× the search itself.  A
question is often asked again — a search and then RAG on it, the next page of results, a user who
re-runs it — and each time paid that again.  With temperature 0 the reply is the model's greedy
choice for (model, messages, options), the same every time (llama.cpp on CPU; the prefix cache
keeps that too, llama_prefix.py), so a kept reply changes no answer.

Kept **per caller** (the database role, else the front end: types.CALLER), as the prompt-prefix
cache is (llama_prefix.py).  A reply only ever goes to a caller who sent the very same messages, so
no text leaks; but a shared cache would answer a guessed question in milliseconds instead of ~1 s,
and a role could learn that another role asked it ("张三的工资是多少?" probed name by name).  Per
caller, the only one who can see that a question was asked before is who asked it.  The model
grant is checked before the cache is read (ModelService.resolve), and a revoked grant is refused
before it.

Opt-in (``reuse``): only the query-understanding routes ask for it; a client's own
/v1/chat/completions call runs the model every time, as its user expects.  In memory, least
recently used first out, ``CAPACITY`` entries (replies of at most a few hundred characters)."""
from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import OrderedDict

from ..spec import ModelSpec
from ..types import CALLER, ChatResult
from .loader import load_identity

CAPACITY = 4096      # ~4,096 questions × (a 32-byte key and a reply of ~100 bytes): under 2 MB


class ReplyCache:
    def __init__(self, capacity: int = CAPACITY):
        self.capacity = max(0, int(capacity))
        self._items: OrderedDict[bytes, ChatResult] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def applies(spec: ModelSpec, options: dict) -> bool:
        """A local model asked greedily (temperature 0, no tools).  A remote provider may change the
        model behind a name; sampled replies differ by design."""
        return (spec.provider == "pgmind" and spec.model_type == "chat" and options.get("temperature") == 0
                and not options.get("tools"))

    @staticmethod
    def key(spec: ModelSpec, messages: list[dict], options: dict) -> bytes:
        # the loaded model's identity (an alias shares its target's replies; other weights do not),
        # the whole prompt and every option that shapes the reply, and whom it is for
        return hashlib.sha256(json.dumps([CALLER.get(), *load_identity(spec), messages, options],
                                         sort_keys=True, ensure_ascii=False, default=str)
                              .encode("utf-8", "surrogatepass")).digest()

    def get(self, key: bytes) -> ChatResult | None:
        if not self.capacity:
            return None
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
        # (nothing was read or generated this time: the call log and the metrics count no tokens)
        reply = copy.deepcopy(found)        # (callers may change what they get)
        reply.input_tokens = reply.output_tokens = 0
        return reply

    def put(self, key: bytes, result: ChatResult) -> None:
        """Only a finished reply: a cancelled one is a piece of one."""
        if not self.capacity or result.finish_reason not in ("stop", "length"):
            return
        with self._lock:
            self._items[key] = copy.deepcopy(result)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
