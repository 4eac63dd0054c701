"""The clients people already use, from PyPI, unchanged but for base URL and key, against the real
model server and database: LangChain, LlamaIndex, litellm, the openai SDK's newer parameters and
the dashscope SDK with its default model names aliased.  (docs/clients.md shows the same code.)"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


DOC = Path(__file__).resolve().parent.parent / "docs" / "clients.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


@pytest.fixture(scope="module")
def aliases(conn_module):
    """The provider default names users' clients send, pointed at local models: the statements
    docs/clients.md gives, run as they are."""
    statements = [s.strip() for s in blocks("sql")[0].split(";\n") if s.strip()]
    made = [re.search(r"create_model\('([^']+)'", s).group(1) for s in statements]
    for alias, statement in zip(made, statements):
        conn_module.execute("select ai.drop_model(%s) where exists (select 1 from ai.models where model_id = %s)",
                            (alias, alias))
        conn_module.execute(statement)
    yield made
    for alias in made:
        conn_module.execute("select ai.drop_model(%s)", (alias,))


@pytest.fixture(scope="module")
def conn_module(installed):
    from pgmind.db.connection import connect
    with connect(installed, autocommit=True) as c:
        yield c


@pytest.fixture
def tiktoken_cache(monkeypatch):
    """Where a user who has tiktoken's file has it (offline, tiktoken cannot download it)."""
    import llama_index.core
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR",
                       os.path.join(os.path.dirname(llama_index.core.__file__), "_static", "tiktoken_cache"))


def sql_vector(conn, text):
    return np.asarray(conn.execute("select ai.embed('e5-small', %s)::real[]", (text,)).fetchone()[0])


def test_langchain_openai_embeddings_defaults(server, token, conn, aliases, tiktoken_cache):
    """OpenAIEmbeddings() as it comes: token ids (cl100k_base) and the default model name, aliased."""
    from langchain_openai import OpenAIEmbeddings
    emb = OpenAIEmbeddings(model="text-embedding-3-small", base_url=server + "/v1", api_key=token, max_retries=0)
    texts = ["怎样查看表的大小", "How do I see how big a table is?"]
    docs = emb.embed_documents(texts)
    q = emb.embed_query(texts[0])
    assert len(docs) == 2 and len(docs[0]) == 384
    # the same text reached the model as SQL sends it (the ids were decoded, not embedded as numbers)
    assert float(np.dot(q, sql_vector(conn, texts[0]))) > 0.999
    long = "PostgreSQL stores large values out of line with TOAST. " * 400     # far over e5-small's 512
    assert len(emb.embed_documents([long])[0]) == 384                         # truncated, not refused


def test_token_ids_over_http(server, token):
    import httpx
    import tiktoken
    from pgmind.server import token_ids
    enc_path = next(p for p in token_ids.candidates() if p.exists())
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(enc_path.parent))
    ids = tiktoken.get_encoding("cl100k_base").encode("熊猫吃竹子 pandas")
    h = {"Authorization": f"Bearer {token}"}
    a = httpx.post(server + "/v1/embeddings", headers=h, json={"model": "e5-small", "input": [ids]}).json()
    b = httpx.post(server + "/v1/embeddings", headers=h, json={"model": "e5-small", "input": "熊猫吃竹子 pandas"}).json()
    assert np.allclose(a["data"][0]["embedding"], b["data"][0]["embedding"], atol=1e-6)
    bad = httpx.post(server + "/v1/embeddings", headers=h, json={"model": "e5-small", "input": [[5, 999999]]})
    assert bad.status_code == 400 and "999999" in bad.json()["error"]["message"]
    assert bad.json()["error"]["hint"]


def test_dimensions_are_renormalised(server, token):
    from openai import OpenAI
    client = OpenAI(base_url=server + "/v1", api_key=token, max_retries=0)
    full = np.asarray(client.embeddings.create(model="e5-small", input="hello").data[0].embedding)
    cut = np.asarray(client.embeddings.create(model="e5-small", input="hello", dimensions=128).data[0].embedding)
    assert cut.shape == (128,) and abs(np.linalg.norm(cut) - 1) < 1e-5
    assert np.allclose(cut, full[:128] / np.linalg.norm(full[:128]), atol=1e-5)
    import openai
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="e5-small", input="hello", dimensions=1024)
    assert "384" in str(e.value)


def test_langchain_chat_tools_and_structured_output(server, token, aliases):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=server + "/v1", api_key=token, temperature=0, max_retries=0)

    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return "18 C"
    msg = llm.bind_tools([get_weather]).invoke("What is the weather in Paris right now?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather"
    assert msg.tool_calls[0]["args"] == {"city": "Paris"}

    class Person(BaseModel):
        """A person mentioned in the text."""
        name: str = Field(description="the person's name")
        age: int = Field(description="age in years")
    for method in ("function_calling", "json_schema", "json_mode"):
        structured = llm.with_structured_output(Person, method=method)
        p = structured.invoke("Alice is 31 years old. Return her name and age as JSON with keys name and age.")
        assert isinstance(p, Person) and p.name == "Alice" and p.age == 31, method


def test_openai_sdk_tools_stream_and_replay(server, token):
    from openai import OpenAI
    client = OpenAI(base_url=server + "/v1", api_key=token, max_retries=0)
    ask = [{"role": "developer", "content": "You help with the weather."},
           {"role": "user", "content": "What is the weather in Paris?"}]
    stream = client.chat.completions.create(model="qwen-1.5b", messages=ask, tools=[WEATHER], temperature=0,
                                            stream=True)
    calls, finish = {}, None
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                calls.setdefault(tc.index, {"name": "", "arguments": "", "id": None})
                calls[tc.index]["name"] += tc.function.name or ""
                calls[tc.index]["arguments"] += tc.function.arguments or ""
                calls[tc.index]["id"] = tc.id or calls[tc.index]["id"]
            finish = choice.finish_reason or finish
    assert finish == "tool_calls" and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    # the agent loop replayed: the assistant's call (content null) and the tool's answer
    replay = ask + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": calls[0]["id"], "type": "function", "function": {"name": "get_weather",
                                                                "arguments": calls[0]["arguments"]}}]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18 degrees Celsius, sunny"}]
    answer = client.chat.completions.create(model="qwen-1.5b", messages=replay, tools=[WEATHER], temperature=0)
    assert answer.choices[0].message.tool_calls is None
    assert "18" in answer.choices[0].message.content


def test_openai_sdk_response_format_and_logprobs(server, token):
    from openai import OpenAI
    client = OpenAI(base_url=server + "/v1", api_key=token, max_retries=0)
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"]}
    r = client.chat.completions.create(
        model="qwen-0.5b", temperature=0, max_tokens=60,
        messages=[{"role": "user", "content": "Berlin has 3.7 million people."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    obj = json.loads(r.choices[0].message.content)
    assert set(obj) == {"city", "population"} and isinstance(obj["population"], int)
    r = client.chat.completions.create(model="qwen-0.5b", messages=[{"role": "user", "content": "Say hi"}],
                                       max_tokens=4, logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs.content
    assert lp and all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in lp)
    assert "".join(t.token for t in lp) == r.choices[0].message.content


@pytest.mark.parametrize("extra,needle", [
    ({"logit_bias": {"1": 5}}, "logit_bias"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}, "images"),
    ({"frobnicate": 1}, "frobnicate"),
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}, "tools": [WEATHER]}, "nope"),
    ({"response_format": {"type": "json_schema"}}, "json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "array", "items": {"type": "integer"}, "maxItems": 10 ** 9}}}}, "maxItems"),
    ({"top_logprobs": 3}, "logprobs"),
])
def test_unsupported_is_an_openai_400(server, token, extra, needle):
    import httpx
    body = {"model": "qwen-0.5b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}
    r = httpx.post(server + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"}, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert needle in err["message"] and err["type"] == "invalid_request_error" and err.get("hint")


def test_completions_and_model_routes(server, token):
    from openai import OpenAI
    import openai
    client = OpenAI(base_url=server + "/v1", api_key=token, max_retries=0)
    r = client.completions.create(model="qwen-0.5b", prompt="Say hello in French.", max_tokens=8, temperature=0)
    assert r.choices[0].text.strip() and r.usage.completion_tokens > 0
    pieces = [c.choices[0].text for c in client.completions.create(
        model="qwen-0.5b", prompt="Count to five.", max_tokens=16, stream=True) if c.choices]
    assert len([p for p in pieces if p]) > 1
    m = client.models.retrieve("e5-small")
    assert m.id == "e5-small"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    import httpx
    r = httpx.get(server + "/v1/no/such/route", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_llamaindex_defaults(server, token):
    from llama_index.embeddings.openai import OpenAIEmbedding
    from llama_index.llms.openai_like import OpenAILike
    emb = OpenAIEmbedding(model_name="e5-small", api_base=server + "/v1", api_key=token, max_retries=0)
    chunk = "VACUUM reclaims storage occupied by dead tuples. " * 120          # ~1,200 tokens: over 512
    assert len(emb.get_text_embedding(chunk)) == 384
    assert len(emb.get_query_embedding("what does vacuum do")) == 384
    llm = OpenAILike(model="qwen-0.5b", api_base=server + "/v1", api_key=token, max_tokens=16, max_retries=0)
    assert llm.complete("Say hello.").text.strip()       # (OpenAILike's default: /v1/completions)


def test_litellm(server, token):
    import litellm
    r = litellm.completion(model="openai/qwen-0.5b", api_base=server + "/v1", api_key=token, max_tokens=8,
                           messages=[{"role": "user", "content": "Say hi"}])
    assert r.choices[0].message.content.strip()
    e = litellm.embedding(model="openai/e5-small", api_base=server + "/v1", api_key=token, input=["hello"])
    assert len(e.data[0]["embedding"]) == 384


def test_dashscope_sdk_default_names(server, token, aliases):
    import dashscope
    from dashscope import Generation, TextEmbedding
    old = dashscope.base_http_api_url
    dashscope.base_http_api_url = server + "/api/v1"
    try:
        r = Generation.call(model="qwen-turbo", prompt="Say hi", api_key=token, max_tokens=8)
        assert r.status_code == 200 and r.output.text.strip()
        r = TextEmbedding.call(model=TextEmbedding.Models.text_embedding_v1, input="你好", api_key=token,
                               dimension=128)
        assert r.status_code == 200
        v = np.asarray(r.output["embeddings"][0]["embedding"])
        assert v.shape == (128,) and abs(np.linalg.norm(v) - 1) < 1e-5
    finally:
        dashscope.base_http_api_url = old


def test_alias_checks(conn, server):
    from conftest import sql_error
    e = sql_error(conn, "select ai.create_model('my-embedder', null, 'pgmind', 'embedding', 'no-such-model')")
    assert e.diag.message_hint and "no-such-model" in e.diag.message_primary
    e = sql_error(conn, "select ai.create_model('my-chat', null, 'pgmind', 'chat', 'no-such-model')")
    assert "not a local chat model" in e.diag.message_primary
    e = sql_error(conn, "select ai.create_model('my-chat', null, 'pgmind', 'embedding', 'qwen-0.5b')")
    assert e.sqlstate == "22023" and "chat model" in e.diag.message_primary


@pytest.fixture
def faq(conn, settings, installed, server):
    from pgmind.vectorizer.worker import Worker
    conn.execute("drop table if exists faq cascade")
    conn.execute("create table faq (id int primary key, q text)")
    conn.execute("""insert into faq values (1, '怎么备份数据库？用 pg_dump 导出一个数据库。'),
                    (2, 'How do I see the size of a table? Use pg_total_relation_size.'),
                    (3, '如何创建索引？CREATE INDEX 语句。')""")
    conn.execute("select ai.create_vectorizer('faq'::regclass, name => 'faq', content => 'q', model => 'e5-small')")
    Worker(settings, installed, names=["faq"]).drain()
    conn.execute(blocks("sql")[1])               # the doc's view for LlamaIndex
    yield "faq"
    conn.execute("drop view data_faq_nodes")
    conn.execute("select ai.drop_vectorizer('faq')")
    conn.execute("drop table faq")


def test_clients_page(server, token, installed, aliases, faq, tiktoken_cache, monkeypatch, capsys):
    """Every Python block of docs/clients.md runs as it is written."""
    monkeypatch.setenv("PGMIND_URL", server)
    monkeypatch.setenv("PGMIND_API_KEY", token)
    from urllib.parse import quote
    from psycopg.conninfo import conninfo_to_dict
    d = conninfo_to_dict(installed)          # (the doc's SQLAlchemy engine takes a URL)
    monkeypatch.setenv("PGMIND_DSN", f"postgresql://{quote(d['user'])}@/{d['dbname']}"
                                     f"?host={quote(d['host'])}&port={d['port']}")
    code = blocks("python")
    assert len(code) == 6
    for i, block in enumerate(code):
        exec(compile(block, f"docs/clients.md block {i + 1}", "exec"), {"__name__": "docs_clients"})
    out = capsys.readouterr().out
    assert "get_weather" in out and "Alice" in out and "256" in out
    assert "'faq_id': 1" in out            # the backup question found the backup row
