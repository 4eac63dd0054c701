"""ai.embed / ai.generate / ai.chat from SQL, through the real model server and the real local models."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import sql_error


def test_embed_single_text_chinese(conn, server):
    v = conn.execute("select ai.embed('e5-small', '熊猫吃什么?')").fetchone()[0]
    arr = np.asarray(v.to_list())
    assert arr.shape == (384,)
    assert abs(np.linalg.norm(arr) - 1.0) < 1e-3


def test_embed_is_multilingual(conn, server):
    """A Chinese question is closer to the English text that answers it than to an unrelated one."""
    q, good, bad = conn.execute("""
        select ai.embed('e5-small', '熊猫吃什么?')::real[],
               ai.embed('e5-small', 'Giant pandas eat bamboo almost exclusively.', 'document')::real[],
               ai.embed('e5-small', 'The stock market closed higher on Friday.', 'document')::real[]""").fetchone()
    q, good, bad = map(np.asarray, (q, good, bad))
    assert q @ good > q @ bad + 0.05


def test_embed_batch_keeps_order_and_nulls(conn, server):
    rows = conn.execute("select idx, embedding from ai.embed('e5-small', array['甲', null, 'hello world'])").fetchall()
    assert [r[0] for r in rows] == [1, 2, 3]
    assert rows[1][1] is None
    single = conn.execute("select ai.embed('e5-small', 'hello world')").fetchone()[0]
    assert np.allclose(rows[2][1].to_list(), single.to_list(), atol=1e-5)


def test_embed_other_local_models(conn, server):
    dims = conn.execute("select vector_dims(ai.embed('use-m3', '今天天气很好')), "
                        "vector_dims(ai.embed('minilm', 'the weather is fine'))").fetchone()
    assert dims == (512, 384)


def test_null_in_null_out(conn, server):
    assert conn.execute("select ai.embed('e5-small', null::text), ai.embed(null, 'x'), "
                        "ai.generate('qwen-0.5b', null), ai.chat('qwen-0.5b', null)").fetchone() == (None,) * 4
    assert conn.execute("select count(*) from ai.embed('e5-small', null::text[])").fetchone()[0] == 0


def test_empty_text_is_a_clear_error(conn, server):
    e = sql_error(conn, "select ai.embed('e5-small', '   ')")
    assert e.sqlstate == "22023"
    assert e.diag.message_primary == "input 0 is empty"     # no "plpy.Error:" prefix from PL/Python
    assert e.diag.message_detail is None
    assert "NULL" in e.diag.message_hint


def test_too_long_text_is_a_clear_error(conn, server):
    e = sql_error(conn, "select ai.embed('e5-small', repeat('数据库 ', 2000))")
    assert e.sqlstate == "22001"
    assert "at most 512" in e.diag.message_primary
    assert "chunk" in e.diag.message_hint
    assert 'options {"truncate"' not in e.diag.message_hint      # an option ai.embed does not have (issue 38)


def test_generate_refuses_an_empty_prompt(conn, server):
    """Issue 38: an empty prompt (spaces, a full-width space) asks nothing; NULL still gives NULL."""
    for prompt in ("", "   ", "\u3000\n"):
        e = sql_error(conn, "select ai.generate('qwen-0.5b', %s)", (prompt,))
        assert e.sqlstate == "22023" and e.diag.message_primary == "the prompt is empty", prompt
        assert "NULL" in e.diag.message_hint


def test_unknown_model(conn, server):
    e = sql_error(conn, "select ai.embed('no-such-model', 'x')")
    assert e.sqlstate == "42704"
    assert "no-such-model" in e.diag.message_primary
    assert "pgmind models list" in e.diag.message_hint


def test_wrong_model_type(conn, server):
    e = sql_error(conn, "select ai.embed('qwen-0.5b', 'x')")
    assert e.sqlstate == "22023"
    assert "not an embedding model" in e.diag.message_primary


def test_generate_chinese(conn, server):
    text = conn.execute("select ai.generate('qwen-0.5b', '用一句话介绍PostgreSQL', "
                        "options => '{\"max_tokens\": 48, \"seed\": 1}')").fetchone()[0]
    assert isinstance(text, str) and text.strip()
    assert any('\u4e00' <= ch <= '\u9fff' for ch in text)


def test_chat_returns_message_and_usage(conn, server):
    out = conn.execute("""select ai.chat('qwen-0.5b',
        '[{"role":"system","content":"Answer with one word."},{"role":"user","content":"What colour is the sky?"}]',
        '{"max_tokens": 8, "temperature": 0}')""").fetchone()[0]
    assert out["message"]["role"] == "assistant"
    assert out["message"]["content"].strip()
    assert out["usage"]["prompt_tokens"] > 0 and 0 < out["usage"]["completion_tokens"] <= 8
    assert out["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("messages,needle", [
    ('{"role": "user"}', "no text content"),
    ('[]', "non-empty JSON array"),
    ('[{"role": "wizard", "content": "hi"}]', "no valid role"),
    ('"hello"', "non-empty JSON array"),
])
def test_invalid_messages(conn, server, messages, needle):
    e = sql_error(conn, "select ai.chat('qwen-0.5b', %s::jsonb)", (messages,))
    assert e.sqlstate == "22023"
    assert needle in e.diag.message_primary
    assert e.diag.message_hint


def test_invalid_options(conn, server):
    e = sql_error(conn, "select ai.generate('qwen-0.5b', 'hi', options => '{\"max_tokens\": \"many\"}')")
    assert e.sqlstate == "22023"
    assert e.diag.message_primary == "option max_tokens must be a number, got 'many'"
    assert e.diag.message_hint is None


def test_model_server_down(installed, server):
    """A backend that finds no model server at the configured URL: 08001 with the fix.
    (A fresh backend reads the settings inside this transaction, then the change is rolled back.)"""
    from pgmind.db import connect
    with connect(installed, autocommit=True) as fresh:
        fresh.execute("begin")
        fresh.execute("update ai._settings set value = 'http://127.0.0.1:9' where key = 'server_url'")
        e = sql_error(fresh, "select ai.embed('e5-small', 'x')")
        fresh.execute("rollback")
    assert e.sqlstate == "08001"
    assert "cannot reach the model server" in e.diag.message_primary
    assert "pgmind serve" in e.diag.message_hint


def test_every_public_function_view_and_table_has_a_comment(conn):
    """What psql's \\df+ and \\dv+ say: one line for each (990_comments.sql)."""
    missing = conn.execute("""
        select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where (n.nspname in ('ai', 'polar_ai') or (n.nspname = 'public' and p.proname like 'ai\\_%'))
          and obj_description(p.oid, 'pg_proc') is null""").fetchall()
    assert missing == []
    missing = conn.execute("""
        select c.oid::regclass::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'ai' and c.relkind in ('r', 'v') and obj_description(c.oid, 'pg_class') is null""").fetchall()
    assert missing == []
    internal = conn.execute("""select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                               where n.nspname = 'ai' and p.proname like '\\_%'""").fetchone()[0]
    assert internal == 0          # internals live in ai_internal, out of \df ai.*


def test_embed_fixed_fills_a_generated_column_and_an_index(conn, server):
    conn.execute("drop table if exists gen_notes")
    conn.execute("""create table gen_notes (id int primary key, body text,
                    embedding vector(384) generated always as (ai.embed_fixed('e5-small', body)) stored)""")
    conn.execute("insert into gen_notes values (1, '熊猫吃竹子'), (2, null)")
    rows = conn.execute("""select id, embedding is null, embedding = ai.embed('e5-small', body, 'document')
                           from gen_notes order by id""").fetchall()
    assert rows == [(1, False, True), (2, True, None)]
    conn.execute("create index on gen_notes using hnsw ((ai.embed_fixed('e5-small', body)::vector(384)) vector_cosine_ops)")
    e = sql_error(conn, "insert into gen_notes values (3, %s)", ("很长的文本 " * 3000,))
    assert e.sqlstate == "22001" and e.diag.message_hint       # SQL says so rather than embed part of it
    conn.execute("drop table gen_notes")


def test_chat_with_tools_from_sql(conn, server):
    out = conn.execute("""select ai.chat('qwen-0.5b', '[{"role":"user","content":"Weather in Paris?"}]',
        '{"temperature": 0, "tool_choice": "required", "tools": [{"type": "function", "function": {
          "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
          "required": ["city"]}}}]}')""").fetchone()[0]
    call = out["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and "city" in json.loads(call["arguments"])
    assert out["finish_reason"] == "tool_calls"
    e = sql_error(conn, "select ai.generate('qwen-0.5b', 'hi', options => '{\"frobnicate\": 1}')")
    assert e.sqlstate == "22023" and "frobnicate" in e.diag.message_primary and e.diag.message_hint
