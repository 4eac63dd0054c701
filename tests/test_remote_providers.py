"""Remote providers through the model server, against stand-ins that replay each provider's
documented responses: the same SQL works for OpenAI-compatible and DashScope models, and failures
(HTTP errors, rate limits, timeouts, garbage) become clear SQL errors."""
from __future__ import annotations

import pytest

from conftest import sql_error
from standins import StandIn, fake_vector


@pytest.fixture(scope="module")
def standin():
    s = StandIn(dim=8)
    yield s
    s.close()


@pytest.fixture(scope="module")
def remote_models(installed, server, standin):
    from pgmind.db import connect
    models = {
        "oa-emb": ("openai", "embedding", "text-embedding-3-small", "/v1"),
        "oa-chat": ("openai", "chat", "gpt-4o-mini", "/v1"),
        "ds-emb": ("dashscope", "embedding", "text-embedding-v3", "/api/v1"),
        "ds-chat": ("dashscope", "chat", "qwen-plus", "/api/v1"),
    }
    with connect(installed, autocommit=True) as c:
        for mid, (provider, mtype, name, path) in models.items():
            c.execute("select ai.drop_model(%s, if_exists => true)", (mid,))
            c.execute("select ai.create_model(%s, %s, %s, %s, %s, '{\"author_type\":\"token\",\"token\":\"sk-test\"}',"
                      " options => '{\"timeout\": 1}')", (mid, standin.url + path, provider, mtype, name))
    yield models
    with connect(installed, autocommit=True) as c:
        for mid in models:
            c.execute("select ai.drop_model(%s)", (mid,))


def test_openai_embedding(conn, standin, remote_models):
    v = conn.execute("select ai.embed('oa-emb', '你好')::real[]").fetchone()[0]
    assert v == pytest.approx(fake_vector("你好", 8), abs=1e-6)
    req = standin.requests[-1]
    assert req["path"] == "/v1/embeddings"
    assert req["body"]["model"] == "text-embedding-3-small"
    assert req["headers"]["Authorization"] == "Bearer sk-test"


def test_dashscope_embedding_batch(conn, standin, remote_models):
    rows = conn.execute("select idx, embedding::real[] from ai.embed('ds-emb', array['a', 'b'], 'document')").fetchall()
    assert [r[1] for r in rows] == [pytest.approx(fake_vector(t, 8), abs=1e-6) for t in "ab"]
    req = standin.requests[-1]
    assert req["body"] == {"model": "text-embedding-v3", "input": {"texts": ["a", "b"]},
                           "parameters": {"text_type": "document"}}


def test_openai_chat(conn, standin, remote_models):
    out = conn.execute("select ai.chat('oa-chat', '[{\"role\":\"user\",\"content\":\"ping\"}]')").fetchone()[0]
    assert out["message"] == {"role": "assistant", "content": "echo: ping"}
    assert out["usage"]["prompt_tokens"] == 9 and out["usage"]["completion_tokens"] == 3


def test_dashscope_chat(conn, standin, remote_models):
    assert conn.execute("select ai.generate('ds-chat', '你好', 'be brief')").fetchone()[0] == "回声: 你好"
    body = standin.requests[-1]["body"]
    assert body["input"]["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "你好"}]
    assert body["parameters"]["result_format"] == "message"


def test_rate_limit_is_retried(conn, standin, remote_models):
    standin.script["/v1/embeddings"] = ["429", "500"]
    n = len(standin.requests)
    v = conn.execute("select ai.embed('oa-emb', 'retry me')::real[]").fetchone()[0]
    assert v == pytest.approx(fake_vector("retry me", 8), abs=1e-6)
    assert len(standin.requests) - n == 3


def test_provider_error_is_reported(conn, standin, remote_models):
    standin.script["/v1/chat/completions"] = ["401"]
    e = sql_error(conn, "select ai.generate('oa-chat', 'x')")
    assert e.sqlstate == "PM002"
    assert "HTTP 401" in e.diag.message_primary and "Incorrect API key" in e.diag.message_primary
    assert "token" in e.diag.message_hint


def test_provider_timeout(conn, standin, remote_models):
    standin.script["/v1/embeddings"] = ["slow"] * 4
    e = sql_error(conn, "select ai.embed('oa-emb', 'slow')")
    assert e.sqlstate == "PM003"
    assert "did not answer within 1 s" in e.diag.message_primary
    standin.script["/v1/embeddings"] = []


def test_provider_garbage(conn, standin, remote_models):
    standin.script["/api/v1/services/aigc/text-generation/generation"] = ["garbage"]
    e = sql_error(conn, "select ai.generate('ds-chat', 'x')")
    assert e.sqlstate == "PM004"
    assert "not JSON" in e.diag.message_primary


def test_provider_unreachable(conn, installed, server):
    from pgmind.db import connect
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.drop_model('nowhere', if_exists => true)")
        c.execute("select ai.create_model('nowhere', 'http://127.0.0.1:9/v1', 'openai', 'chat', 'x', "
                  "options => '{\"timeout\": 1}')")
    try:
        e = sql_error(conn, "select ai.generate('nowhere', 'x')")
        assert e.sqlstate == "PM002"
        assert "cannot reach 127.0.0.1" in e.diag.message_primary
        assert "URL" in e.diag.message_hint
    finally:
        conn.execute("select ai.drop_model('nowhere')")
