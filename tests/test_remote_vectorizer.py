"""Vectorizers on remote models (issue 13), against a provider stand-in (tests/standins.py, which
replays OpenAI's documented responses): a provider that refuses some inputs of a batch gets only
those rows quarantined; chunks are sized so they are never refused for length; 429, 5xx and
timeouts are retried and never quarantined.  The worker calls the provider directly (it holds the
key), so there is no hop through the model server."""
from __future__ import annotations

from dataclasses import replace

import pytest

from pgmind.vectorizer.worker import Worker
from standins import StandIn


@pytest.fixture
def remote(conn):
    standin = StandIn(dim=8)
    conn.execute("select ai.drop_model('remote-emb', if_exists => true)")
    conn.execute("select ai.create_model('remote-emb', %s, 'openai', 'embedding', 'text-embedding-3-small', "
                 "'{\"author_type\": \"token\", \"token\": \"sk-remote-1234567\"}', "
                 "options => '{\"dimensions\": 8, \"max_tokens\": 60}')", (standin.url + "/v1",))
    conn.execute("drop table if exists rdocs cascade")
    conn.execute("create table rdocs (id int primary key, body text)")
    yield standin
    conn.execute("select ai.drop_vectorizer('rdocs') where exists (select 1 from ai.vectorizer_status where name = 'rdocs')")
    conn.execute("drop table if exists rdocs cascade")
    conn.execute("select ai.drop_model('remote-emb', if_exists => true)")
    standin.close()


def worker(settings, installed, **kw):
    return Worker(replace(settings, max_retries=0), installed, names=["rdocs"], poll_interval=0.1, **kw)


def embedded(conn):
    return sorted(r[0] for r in conn.execute("select distinct id from rdocs_chunks"))


def test_refused_inputs_quarantine_only_their_rows(conn, settings, installed, remote):
    remote.default["/v1/embeddings"] = "refuse-long"          # 400 for a batch holding a text over 200 chars
    conn.execute("insert into rdocs values (1, 'short one'), (2, %s), (3, 'short two'), (4, %s), (5, '熊猫吃竹子')",
                 ("x" * 300, "word " * 80))
    # method none: each row is one chunk, so the long rows are sent whole (and refused)
    conn.execute("select ai.create_vectorizer('rdocs'::regclass, content => 'body', model => 'remote-emb', "
                 "chunking => '{\"method\": \"none\"}')")
    w = worker(settings, installed)
    w.drain(timeout=60)
    assert embedded(conn) == [1, 3, 5]
    errors = conn.execute("select key, error from ai.vectorizer_errors where vectorizer = 'rdocs' order by key"
                          ).fetchall()
    assert [e[0] for e in errors] == [{"id": 2}, {"id": 4}]
    assert all("too long" in e[1] and "sk-remote" not in e[1] for e in errors)
    assert conn.execute("select pending from ai.vectorizer_status where name = 'rdocs'").fetchone()[0] == 0
    # the worker called the provider itself, with the stored key
    assert remote.requests and all(r["headers"].get("Authorization") == "Bearer sk-remote-1234567"
                                   for r in remote.requests)


def test_chunks_for_a_remote_model_are_never_refused_for_length(conn, settings, installed, remote):
    """The model takes 60 tokens (options.max_tokens); the vectorizer asks for 200-token chunks; the
    stand-in refuses anything over 200 characters.  Chunks are cut to the model's limit, counted
    with an upper estimate (one token per three characters, one per CJK character)."""
    remote.default["/v1/embeddings"] = "refuse-long"
    text_en = "PostgreSQL supports several index types, each suited to different queries. " * 12
    text_zh = "PostgreSQL 支持多种索引类型,每种适合不同的查询。" * 20
    conn.execute("insert into rdocs values (1, %s), (2, %s), (3, %s)", (text_en, text_zh, "https://x.example/" + "a1b2" * 60))
    conn.execute("select ai.create_vectorizer('rdocs'::regclass, content => 'body', model => 'remote-emb', "
                 "chunking => '{\"method\": \"recursive\", \"max_tokens\": 200, \"overlap\": 10}')")
    worker(settings, installed).drain(timeout=60)
    assert embedded(conn) == [1, 2, 3]
    assert conn.execute("select count(*) from ai.vectorizer_errors where vectorizer = 'rdocs'").fetchone()[0] == 0
    sent = [t for r in remote.requests for t in r["body"]["input"]]
    assert sent and max(len(t) for t in sent) <= 200


@pytest.mark.parametrize("failures", [["429"], ["500", "500"], ["slow"], ["401"]])
def test_transient_failures_are_retried_never_quarantined(conn, settings, installed, remote, failures):
    conn.execute("select ai.alter_model('remote-emb', options => '{\"dimensions\": 8, \"max_tokens\": 60, \"timeout\": 1}')")
    remote.script["/v1/embeddings"] = list(failures)
    conn.execute("insert into rdocs values (1, 'one'), (2, 'two')")
    conn.execute("select ai.create_vectorizer('rdocs'::regclass, content => 'body', model => 'remote-emb')")
    w = worker(settings, installed)
    w.run_once()
    status = conn.execute("select pending + leased, errors, last_error from ai.vectorizer_status where name = 'rdocs'"
                          ).fetchone()
    assert status[0] == 2 and status[1] == 0 and status[2]          # back in the queue, with the reason
    assert "sk-remote" not in status[2]
    conn.execute("update ai.vectorizer_queue set next_attempt_at = now()")
    w.drain(timeout=60)
    assert embedded(conn) == [1, 2]
    assert conn.execute("select count(*) from ai.vectorizer_errors where vectorizer = 'rdocs'").fetchone()[0] == 0


def test_a_refused_row_is_chunked_smaller_before_it_is_quarantined(conn, settings, installed, remote):
    """The model's limit is not known (no options.max_tokens), so chunks follow the vectorizer's 256
    tokens; the provider refuses texts over 200 characters.  Refused rows are chunked again at half
    the size until the provider takes them: every row is embedded, none quarantined."""
    remote.default["/v1/embeddings"] = "refuse-long"
    conn.execute("select ai.alter_model('remote-emb', options => '{\"dimensions\": 8}')")
    conn.execute("insert into rdocs values (1, 'short'), (2, %s)",
                 ("Indexes speed up queries. They cost space and slow down writes. " * 30,))
    conn.execute("select ai.create_vectorizer('rdocs'::regclass, content => 'body', model => 'remote-emb', "
                 "chunking => '{\"method\": \"recursive\", \"max_tokens\": 256, \"overlap\": 0}')")
    worker(settings, installed).drain(timeout=60)
    assert embedded(conn) == [1, 2]
    assert conn.execute("select count(*) from ai.vectorizer_errors where vectorizer = 'rdocs'").fetchone()[0] == 0
    assert conn.execute("select max(length(chunk)) from rdocs_chunks").fetchone()[0] <= 200
