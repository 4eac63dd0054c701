"""A sentence-transformers model (models/local/st.py) at each precision, and its token counts read
in one batch: fp32, bf16 autocast and bf16 weights give vectors close to fp32's, the batched count is
the one-by-one count, and an unknown precision is a clear error."""
from __future__ import annotations

import numpy as np
import pytest

from pgmind.errors import ModelLoadError
from pgmind.models.local.base import CPU_BATCH_TOKENS
from pgmind.models.local.st import SentenceTransformerModel, packaged_minilm_path

TEXTS = ["create an index concurrently without locking the table",
         "VACUUM reclaims storage occupied by dead tuples. " * 8,
         "如何在不锁表的情况下创建索引?", "emoji 🐘 and naïve café", "x" * 300, "x"]

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def models():
    # (on a CPU without native bf16 torch emulates it: slower, nearly the same numbers)
    return {p: SentenceTransformerModel(packaged_minilm_path(), precision=p) for p in ("fp32", "autocast", "bf16")}


def test_precisions_stay_close_to_fp32(models):
    ref = models["fp32"].embed(TEXTS, "document").vectors
    for precision, floor in (("autocast", 0.999), ("bf16", 0.99)):
        v = models[precision].embed(TEXTS, "document").vectors
        assert v.dtype == np.float32 and v.shape == ref.shape
        assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-3)
        assert (np.sum(v * ref, axis=1) >= floor).all(), precision
    assert models["bf16"].precision == "bf16" and models["fp32"].precision == "fp32"


def test_batched_token_counts_are_the_one_by_one_counts(models):
    m = models["fp32"]
    assert m.count_tokens_many(TEXTS) == [m.count_tokens(t) for t in TEXTS]
    assert m.check(TEXTS)[1] == sum(m.count_tokens(t) for t in TEXTS)
    # an over-long text is still cut to the model's limit (and counted as cut)
    checked, tokens = m.check(["word " * 400], truncate=True)
    assert m.count_tokens(checked[0]) <= m.max_tokens and tokens == m.count_tokens(checked[0])


def test_unknown_precision():
    with pytest.raises(ModelLoadError) as e:
        SentenceTransformerModel(packaged_minilm_path(), precision="fp8")
    assert "fp32" in e.value.hint


def test_ids_kept_from_the_check_give_encodes_vectors(models):
    """The forward pass over the ids the length check made (one tokenization) gives the vectors of
    sentence-transformers' own encode, for texts checked first, texts not checked, and a repeat."""
    m = models["fp32"]
    assert m._backend is not None
    texts = TEXTS + [TEXTS[0]]
    ref = m._model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)
    checked, _ = m.check(texts)
    assert len(m._ids) >= len(set(texts))
    v = m.embed(checked, "document", validated=True).vectors
    assert (np.sum(v * ref, axis=1) >= 0.99999).all()
    assert not any(t in m._ids for t in texts)           # used once, then let go
    assert (np.sum(m.embed_batch(["never checked"], "query") * m._model.encode(
        ["never checked"], normalize_embeddings=True), axis=1) >= 0.99999).all()


def test_batches_packed_by_true_lengths(models):
    """After the length check, batches are packed by the texts' token counts (not an estimate),
    longest first, each within the CPU's padded-token budget."""
    m = models["fp32"]
    texts = ["vacuum " * n for n in (5, 200, 10, 180, 7, 190, 3, 60)]
    m.check(texts)
    lengths = m.token_lengths(texts)
    assert lengths == [m.count_tokens(t) for t in texts]
    batches = m.pack(texts)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= m.max_batch_tokens
    assert m.max_batch_tokens == CPU_BATCH_TOKENS
    assert [lengths[i] for b in batches for i in b] == sorted(lengths, reverse=True)
    assert len(batches) > 1
