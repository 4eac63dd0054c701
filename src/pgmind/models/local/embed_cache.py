"""Embeddings already computed, keyed by (model, input type, truncation, sha256 of the text).

Re-embedding unchanged text — the unchanged chunks of an edited file, a vectorizer re-created on the
same model, a question asked again — then costs a dictionary lookup instead of a forward pass.
In memory, least recently used first out, bounded by ``PGMIND_EMBED_CACHE`` entries (0 turns it
off).  Local models only: a remote provider may change the model behind a name, and its users may
want every call made.  It holds hashes and vectors, never text.  (A cached text returns sooner than
a new one; what that could tell a caller — that someone embedded the same text earlier — is in
docs/security.md.)"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

import numpy as np

from ..spec import ModelSpec
from .loader import load_identity


class EmbedCache:
    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def applies(spec: ModelSpec) -> bool:
        return spec.provider == "pgmind"

    @staticmethod
    def keys(spec: ModelSpec, texts: list[str], input_type: str, truncate: bool) -> list[bytes]:
        # the model's identity is what computes the vector: the hub's identity of the loaded model
        # (name and load options: fine-tuned weights, prefixes, precision), not the registration's
        # id (an alias shares its target's entries)
        model = json.dumps([*load_identity(spec), input_type, bool(truncate)])
        prefix = hashlib.sha256(model.encode()).digest()
        return [hashlib.sha256(prefix + t.encode("utf-8", "surrogatepass")).digest() for t in texts]

    def get(self, keys: list[bytes]) -> list[np.ndarray | None]:
        if not self.capacity:
            return [None] * len(keys)
        out = []
        with self._lock:
            for k in keys:
                v = self._items.get(k)
                if v is not None:
                    self._items.move_to_end(k)
                out.append(v)
            found = sum(v is not None for v in out)
            self.hits += found
            self.misses += len(keys) - found
        return out

    def put(self, keys: list[bytes], vectors: np.ndarray) -> None:
        if not self.capacity:
            return
        with self._lock:
            for k, v in zip(keys, vectors):
                self._items[k] = np.array(v, dtype=np.float32)        # a copy: callers may change theirs
                self._items.move_to_end(k)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
