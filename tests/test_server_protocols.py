"""The model server's protocols, driven by the official SDKs (openai, dashscope) changed only in
base URL and key, plus raw HTTP for auth, errors, /health, /metrics and the call log."""
from __future__ import annotations

import httpx
import numpy as np
import pytest


@pytest.fixture
def openai_client(server, token):
    from openai import OpenAI
    return OpenAI(base_url=server + "/v1", api_key=token, max_retries=0)


def test_openai_sdk_embeddings(openai_client, conn):
    # the SDK asks for base64 by default and decodes it
    resp = openai_client.embeddings.create(model="e5-small", input=["熊猫吃竹子", "pandas eat bamboo"])
    assert [d.index for d in resp.data] == [0, 1]
    a, b = (np.asarray(d.embedding) for d in resp.data)
    assert a.shape == (384,) and abs(np.linalg.norm(a) - 1) < 1e-3
    assert a @ b > 0.8
    assert resp.usage.prompt_tokens > 0
    # the same vector as SQL gives
    sql = np.asarray(conn.execute("select ai.embed('e5-small', '熊猫吃竹子')::real[]").fetchone()[0])
    assert np.allclose(a, sql, atol=1e-5)
    floats = openai_client.embeddings.create(model="minilm", input="hello", encoding_format="float")
    assert len(floats.data[0].embedding) == 384


def test_float_vectors_are_the_models_float32(server, token):
    """Float vectors are written as their shortest float32 text where orjson is installed (server/deps.py):
    read back as float32 they are bit for bit what base64 sends, in both protocols."""
    import base64
    texts = ["熊猫吃竹子", "VACUUM reclaims storage occupied by dead tuples."]
    auth = {"Authorization": f"Bearer {token}"}
    b64 = httpx.post(server + "/v1/embeddings", headers=auth, timeout=60,
                     json={"model": "minilm", "input": texts, "encoding_format": "base64"}).json()
    exact = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64["data"]])
    floats = httpx.post(server + "/v1/embeddings", headers=auth, timeout=60,
                        json={"model": "minilm", "input": texts}).json()
    assert [d["index"] for d in floats["data"]] == [0, 1]
    assert np.array_equal(np.asarray([d["embedding"] for d in floats["data"]], dtype=np.float32), exact)
    ds = httpx.post(server + "/api/v1/services/embeddings/text-embedding/text-embedding", headers=auth, timeout=60,
                    json={"model": "minilm", "input": {"texts": texts}, "parameters": {"text_type": "query"}}).json()
    assert np.array_equal(np.asarray([e["embedding"] for e in ds["output"]["embeddings"]], dtype=np.float32), exact)


def test_openai_sdk_chat_and_stream(openai_client):
    resp = openai_client.chat.completions.create(
        model="qwen-0.5b", messages=[{"role": "user", "content": "Say hello in Chinese."}], max_tokens=16, seed=1)
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content.strip()
    assert resp.usage.completion_tokens > 0
    stream = openai_client.chat.completions.create(
        model="qwen-0.5b", messages=[{"role": "user", "content": "Count from 1 to 5."}], max_tokens=24,
        stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert len([p for p in pieces if p]) > 1        # it really streamed, piece by piece
    assert "".join(pieces).strip()
    assert finish in ("stop", "length")
    assert usage and usage.completion_tokens > 0


def test_openai_sdk_errors(openai_client, server):
    import openai
    with pytest.raises(openai.NotFoundError) as e:
        openai_client.embeddings.create(model="nope", input="x")
    assert "not registered" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        openai_client.chat.completions.create(model="qwen-0.5b", messages=[])
    bad = openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="e5-small", input="x")


def test_openai_models_list(openai_client):
    ids = {m.id for m in openai_client.models.list()}
    assert {"e5-small", "use-m3", "minilm", "qwen-0.5b"} <= ids


@pytest.fixture
def dashscope_sdk(server, token):
    import dashscope
    old = dashscope.base_http_api_url
    dashscope.base_http_api_url = server + "/api/v1"
    dashscope.api_key = token
    yield dashscope
    dashscope.base_http_api_url = old


def test_dashscope_sdk_text_embedding(dashscope_sdk):
    from dashscope import TextEmbedding
    resp = TextEmbedding.call(model="e5-small", input=["风急天高猿啸哀", "渚清沙白鸟飞回"], text_type="document")
    assert resp.status_code == 200, resp
    embs = resp.output["embeddings"]
    assert [e["text_index"] for e in embs] == [0, 1]
    assert len(embs[0]["embedding"]) == 384
    assert resp.usage["total_tokens"] > 0


def test_dashscope_sdk_generation(dashscope_sdk):
    from dashscope import Generation
    resp = Generation.call(model="qwen-0.5b", messages=[{"role": "user", "content": "你好,请用一句话介绍你自己"}],
                           result_format="message", max_tokens=32, seed=1)
    assert resp.status_code == 200, resp
    msg = resp.output.choices[0].message
    assert msg.role == "assistant" and msg.content.strip()
    assert resp.usage.output_tokens > 0 and resp.usage.input_tokens > 0
    # streaming, incremental
    parts = []
    for r in Generation.call(model="qwen-0.5b", messages=[{"role": "user", "content": "数到五"}],
                             result_format="message", stream=True, incremental_output=True, max_tokens=24):
        assert r.status_code == 200, r
        parts.append(r.output.choices[0].message.content)
    assert len([p for p in parts if p]) > 1 and "".join(parts).strip()


def test_dashscope_sdk_error(dashscope_sdk):
    from dashscope import Generation
    resp = Generation.call(model="no-such-model", messages=[{"role": "user", "content": "x"}],
                           result_format="message")
    assert resp.status_code == 404
    assert "not registered" in resp.message


def test_auth_is_required(server):
    for path in ("/v1/embeddings", "/v1/chat/completions", "/pgmind/v1/call",
                 "/api/v1/services/aigc/text-generation/generation"):
        r = httpx.post(server + path, json={"model": "e5-small", "input": "x"})
        assert r.status_code == 401, path
    assert httpx.get(server + "/v1/models").status_code == 401


def test_error_hints_point_somewhere(server, token):
    """Issue 38, item 10: an HTTP user is told to send an API key (not the server's own token), and
    a bad request points at documentation that is there (not /docs, which is not)."""
    for bearer, message in (("sk-wrong", "not an API key of this server"), ("pgmk-0000", "unknown or revoked"),
                            (None, "no Authorization header")):
        r = httpx.post(server + "/v1/embeddings", json={"model": "e5-small", "input": "x"},
                       headers={"Authorization": f"Bearer {bearer}"} if bearer else {})
        error = r.json()["error"]
        assert r.status_code == 401 and message in error["message"], r.text
        assert "ai.create_api_key" in error["hint"] and "show-token" not in error["hint"], r.text
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.post(server + "/v1/search", json={"name": "x", "query": "y", "k": 0}, headers=auth)
    hint = r.json()["error"]["hint"]
    assert r.status_code == 400 and "/docs" not in hint and "/openapi.json" in hint, r.text
    assert httpx.get(server + "/openapi.json", headers=auth).status_code == 200
    assert httpx.get(server + "/docs", headers=auth).status_code == 404
    r = httpx.post(server + "/v1/embeddings", json={"model": "e5-small", "input": "数据库 " * 2000, "truncate": False},
                   headers=auth)
    assert r.status_code == 400 and '"truncate": true' in r.json()["error"]["hint"], r.text


def test_models_report_their_input_limit(server, token):
    """What a client (or another pgmind's vectorizer) sizes its chunks by."""
    models = httpx.get(server + "/v1/models", headers={"Authorization": f"Bearer {token}"}).json()["data"]
    by_id = {m["id"]: m for m in models}
    assert by_id["e5-small"]["max_tokens"] == 512 and by_id["minilm"]["max_tokens"] == 256


def test_bad_json_body(server, token):
    r = httpx.post(server + "/v1/embeddings", content=b"{not json", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]


def test_health_and_metrics(server, token):
    assert httpx.get(server + "/health").json()["status"] == "ok"
    httpx.post(server + "/v1/embeddings", json={"model": "e5-small", "input": "metrics"},
               headers={"Authorization": f"Bearer {token}"}, timeout=120)
    text = httpx.get(server + "/metrics", headers={"Authorization": f"Bearer {token}"}).text
    assert 'pgmind_model_requests_total{client="openai-api",model="e5-small",operation="embed",status="ok"}' in text
    assert "pgmind_embedding_batch_size_bucket" in text
    assert "pgmind_model_latency_seconds_bucket" in text
    assert httpx.get(server + "/metrics").status_code == 401      # model ids and names are not public


def test_calls_are_logged(conn, server, token, flush_call_log):
    flush_call_log()                      # earlier tests' records are written before the marker
    marker = conn.execute("select coalesce(max(id), 0) from ai.call_log").fetchone()[0]
    conn.execute("select ai.embed('e5-small', 'log me')")
    flush_call_log()                      # (the server records a call before it answers it)
    rows = conn.execute("select model_id, operation, client, caller, items, input_tokens, latency_ms, status, payload "
                        "from ai.call_log where id > %s and model_id = 'e5-small' order by id", (marker,)).fetchall()
    model, op, client, caller, items, tokens, latency, status, payload = rows[0]
    assert (model, op, client, caller, items, status) == ("e5-small", "embed", "sql", "pgmind", 1, "ok")
    assert tokens > 0 and latency > 0
    assert payload is None   # no payloads unless the operator turns them on


def test_failed_calls_are_logged(conn, server, flush_call_log):
    flush_call_log()
    marker = conn.execute("select coalesce(max(id), 0) from ai.call_log").fetchone()[0]
    with pytest.raises(Exception):
        conn.execute("select ai.embed('e5-small', repeat('很长的文本 ', 3000))")
    flush_call_log()
    row = conn.execute("select status, http_status, error from ai.call_log where id > %s and model_id = 'e5-small'",
                       (marker,)).fetchone()
    assert row[0] == "error" and row[1] == 400
    assert "tokens" in row[2]
