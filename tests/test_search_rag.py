"""Search and RAG on a small real knowledge base: pages of the PostgreSQL manual and a few Chinese
documents, ingested from a folder, embedded by a real worker with a real multilingual model."""
from __future__ import annotations

from collections import Counter

import json
import shutil
from pathlib import Path

import httpx
import psycopg
from psycopg import sql as pgsql
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from conftest import sql_error
from pgmind.client import Pgmind
from pgmind.ingest import ingest
from pgmind.vectorizer.worker import Worker

MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
PAGES = ["sql-createindex.html", "sql-vacuum.html", "sql-copy.html", "datatype-json.html", "indexes-types.html",
         "sql-notify.html", "datatype-uuid.html", "tutorial-window.html"]
CHINESE = {
    "zh/panda.md": "# 大熊猫\n\n大熊猫是中国特有的动物。它们主要吃竹子,每天要吃十几公斤竹子。\n",
    "zh/index.md": "# 数据库索引\n\n索引可以加快查询速度。PostgreSQL 支持 B-tree、GIN 和 BRIN 等索引类型。\n",
    "zh/weather.md": "# 天气\n\n北京的冬天寒冷干燥,夏天炎热多雨。\n",
}


def logged_since(conn, flush, marker: int,
                 query: str = "select operation from ai.call_log where id > %s order by id") -> list:
    """The first column of query's ai.call_log rows after marker (query takes marker as its one
    parameter), once the server has written every call it answered (flush_call_log): no waiting,
    no polling."""
    flush()
    return [r[0] for r in conn.execute(query, (marker,))]


@pytest.fixture(scope="module")
def kb(installed, settings, server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kb")
    for p in PAGES:
        shutil.copy(MANUAL / p, folder / p)
    for rel, text in CHINESE.items():
        (folder / rel).parent.mkdir(exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    from pgmind.db import connect
    with connect(installed) as conn:
        conn.execute("drop table if exists kb cascade")
        conn.commit()
        result = ingest(conn, folder, "kb", model="use-m3")
    assert result.changed == len(PAGES) + len(CHINESE)
    Worker(settings, installed, names=["kb"]).drain()
    yield folder
    with connect(installed, autocommit=True) as conn:
        conn.execute("select ai.drop_vectorizer('kb')")
        conn.execute("drop table kb")


@pytest.fixture
def db(settings, kb):
    with Pgmind(settings=settings) as d:
        yield d


def top_sources(hits, n=3):
    return [h.key["path"] for h in hits][:n]


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_search_modes_english(db, mode):
    hits = db.search("kb", "create an index concurrently without locking", k=5, mode=mode)
    assert hits and hits[0].key["path"] == "sql-createindex.html"
    assert len(hits) <= 5
    # keyword search alone does not embed the question, so it has no similarity
    assert all((h.similarity is None) == (mode == "keyword") for h in hits)
    if mode == "hybrid":
        assert all(h.vector_rank or h.keyword_rank for h in hits)


def test_chinese_question_finds_english_page(db):
    hits = db.search("kb", "如何把 CSV 文件导入到表中", k=5, mode="vector")
    assert "sql-copy.html" in top_sources(hits, 3)


def test_chinese_keyword_search(db):
    """Chinese has no spaces: keyword search works through character bigrams."""
    hits = db.search("kb", "竹子", k=3, mode="keyword")
    assert hits[0].key["path"] == "zh/panda.md"
    hits = db.search("kb", "哪些索引类型", k=3, mode="keyword")
    assert hits[0].key["path"] == "zh/index.md"
    # English keeps stemming: "notifications" finds NOTIFY's page by its stem
    assert db.search("kb", "notifications listeners", k=3, mode="keyword")[0].key["path"] == "sql-notify.html"


def test_chinese_question_translated_for_keyword_search(db, conn, flush_call_log):
    """Words cannot match across languages: for a Chinese question over a knowledge base whose
    language is English, the keyword side also searches the question's English translation
    (by the local chat model, logged like every model call)."""
    settings = conn.execute("select ai.configure_rag('kb', '{}')").fetchone()[0]
    assert settings["language"] == "en"            # set by ingest from the documents
    question = "怎样生成唯一标识符?"
    marker = conn.execute("select coalesce(max(id), 0) from ai.call_log").fetchone()[0]
    english = conn.execute("select ai.translate_query('kb', %s)", (question,)).fetchone()[0]
    assert english.isascii() and "identifier" in english.lower()
    assert conn.execute("select ai.translate_query('kb', 'How are identifiers made?')").fetchone()[0] \
        == "How are identifiers made?"
    # never a mix: a reply that is not English is no translation, and the question stays as it is
    for q in ("竹子", "大熊猫吃什么?"):
        reply = conn.execute("select ai.translate_query('kb', %s)", (q,)).fetchone()[0]
        assert reply == q or reply.isascii(), reply
    logged = logged_since(conn, flush_call_log, marker,
                          "select model_id from ai.call_log where id > %s and operation = 'chat'")
    assert logged and set(logged) == {"qwen-0.5b"}
    assert top_sources(db.search("kb", question, k=3, mode="keyword"), 1) == ["datatype-uuid.html"]
    # with translation off, the Chinese words find no English page
    conn.execute("select ai.configure_rag('kb', '{\"translate_model\": null}')")
    try:
        assert not [h for h in db.search("kb", question, k=3, mode="keyword") if not h.key["path"].startswith("zh/")]
    finally:
        conn.execute("select ai.configure_rag('kb', '{\"translate_model\": \"qwen-0.5b\"}')")


def test_chunks_per_source(conn, kb):
    """chunks_per_source caps the chunks of one source row before k is counted: k rows, more rows."""
    q = "create index concurrently without locking"
    plain = conn.execute("select key->>'path' from ai.search('kb', %s, 6)", (q,)).fetchall()
    capped = conn.execute("select key->>'path' from ai.search('kb', %s, 6, chunks_per_source => 1)", (q,)).fetchall()
    # one chunk per page, as many pages as the candidate lists hold (up to k)
    assert len({p for (p,) in capped}) == len(capped) > len({p for (p,) in plain})
    err = sql_error(conn, "select * from ai.search('kb', 'x', 5, chunks_per_source => 0)")
    assert err.sqlstate == "22023" and err.diag.message_hint


def test_ef_search_grows_with_the_table(conn, kb):
    """hnsw.ef_search: 40 on a small table, more as the chunks grow (40 x (chunks / 10k)^0.6, at most
    1000), never fewer than the candidates asked for.  (The table's size is the planner's estimate,
    set here in a transaction that is rolled back.)"""
    store = conn.execute("select format('%I.%I', v.dest_schema, ver.store_table) from ai.vectorizers v "
                         "join ai.vectorizer_versions ver on ver.vectorizer_id = v.id "
                         "where v.name = 'kb' and ver.status = 'active'").fetchone()[0]

    def ef(rows, candidates=None):
        with conn.transaction(force_rollback=True):
            conn.execute("update pg_class set reltuples = %s where oid = %s::regclass", (rows, store))
            conn.execute("select * from ai.search('kb', 'vacuum', 5, mode => 'vector', candidates => %s)",
                         (candidates,)).fetchall()
            return int(conn.execute("select current_setting('hnsw.ef_search')").fetchone()[0])
    assert ef(-1) == ef(500) == ef(10_000) == 40
    assert ef(100_000) == 160 and 600 < ef(1_000_000) < 700 and ef(1e9) == 1000
    assert ef(500, candidates=300) == 300


def test_query_expansion(db, conn, flush_call_log):
    """expand => true: the chat model writes a short answer naming the terms the documents use, and
    its vector and keyword lists are fused with the question's.  A question sharing no word with
    its page finds it; the call is logged; with the
    expansion model off the search is the plain one."""
    questions = {"give disk space back after deleting lots of rows": "sql-vacuum.html",
                 "running total per department": "tutorial-window.html"}
    # the topic tells the model what the documents are about (else it has only the name "kb")
    conn.execute("""select ai.configure_rag('kb', '{"topic": "PostgreSQL"}')""")
    marker = conn.execute("select coalesce(max(id), 0) from ai.call_log").fetchone()[0]
    wrong_without = 0
    for question, page in questions.items():
        plain = db.search("kb", question, k=10)
        expanded = db.search("kb", question, k=10, expand=True)
        assert top_sources(expanded, 1) == [page], (question, top_sources(expanded))
        wrong_without += top_sources(plain, 1) != [page]
    assert wrong_without                # (what the expansion is for: on the manual, MRR 0.47 → 0.67)
    # similarity: the mean of the chunk's similarity to the question and to the expansion
    assert all(-1 <= h.similarity <= 1 for h in expanded)
    assert any(h.vector_rank for h in expanded) and any(h.keyword_rank for h in expanded)
    logged = logged_since(conn, flush_call_log, marker,
                          "select model_id from ai.call_log where id > %s and operation = 'chat'")
    assert "qwen-1.5b" in logged
    # each mode takes it; keyword-only needs no embedding (similarity null)
    assert all(h.similarity is None for h in db.search("kb", question, k=3, mode="keyword", expand=True))
    assert db.search("kb", question, k=3, mode="vector", expand=True)
    # expand_tokens caps what the expansion writes (a logged call's output tokens)
    conn.execute("""select ai.configure_rag('kb', '{"expand_tokens": 5}')""")
    try:
        marker = conn.execute("select coalesce(max(id), 0) from ai.call_log").fetchone()[0]
        assert db.search("kb", "a question not asked before in this test", k=3, expand=True)
        # (the earlier searches' calls may be logged after the marker: look for this one's)
        written = logged_since(conn, flush_call_log, marker,
                               "select output_tokens from ai.call_log where id > %s and operation = 'chat'"
                               " and model_id = 'qwen-1.5b'")
        assert any(0 < n <= 5 for n in written), written
    finally:
        conn.execute("select ai.configure_rag('kb', jsonb_build_object('expand_tokens', ai.rag_defaults()->'expand_tokens'))")
    conn.execute("""select ai.configure_rag('kb', '{"expand_model": null}')""")
    try:
        off = db.search("kb", question, k=10, expand=True)
        assert [(h.key, h.chunk_seq) for h in off] == [(h.key, h.chunk_seq) for h in plain]
        # the caller's own expansion is searched like the model's, and needs no chat model (none is set here)
        own = conn.execute("select key->>'path' from ai.search('kb', 'give disk space back after deleting lots of rows',"
                           " k => 3, expansion => 'VACUUM FULL rewrites the table and returns the space to the "
                           "operating system.')").fetchall()
        assert own[0] == ("sql-vacuum.html",), own
        # the expansion's keyword list searches the names it writes as code, not its other words
        # (which here all point at other pages)
        named = conn.execute("select key->>'path' from ai.search('kb', 'tell my program', k => 3, mode => 'keyword',"
                             " expansion => 'Use `NOTIFY` so the app hears of the rows copied into the table, its"
                             " index types, indexes and the JSON values in the window.')").fetchall()
        assert named[0] == ("sql-notify.html",), named
        err = sql_error(conn, "select * from ai.search('kb', 'x', expansion => repeat('x', 10001))")
        assert err.sqlstate == "22023" and err.diag.message_hint
    finally:
        conn.execute("""select ai.configure_rag('kb', '{"expand_model": "qwen-1.5b", "topic": null}')""")
    for bad in ('{"expand": "yes"}', '{"expand_model": 3}', '{"topic": ["a"]}', '{"expand_tokens": 0}',
                '{"expand_tokens": 513}', '{"expand_tokens": 2.5}', '{"expand_tokens": null}', '{"expand_tokens": "64"}'):
        err = sql_error(conn, f"select ai.configure_rag('kb', '{bad}')")
        assert err.sqlstate == "22023" and "expand" in err.diag.message_hint, bad


def test_expansion_terms_route(conn, server):
    """ai.search reads an expansion's names and headings from the model server (pgmind.rag.text,
    whose rules tests/test_rag_text.py checks); the route answers any role, as itself."""
    terms = conn.execute("select ai_internal._json_request('/pgmind/v1/rag/expansion-terms', "
                         "'{\"expansion\": \"Use `COALESCE(x, 0)` or `COMMENT ON`\"}')").fetchone()[0]
    assert terms == {"names": "COALESCE(x, 0) COMMENT ON", "headings": ["coalesce", "comment on", "comment"]}


def test_a_heading_the_expansion_names_is_one_more_list(db, conn):
    """A page whose heading the expansion names ("## NOTIFY") ranks in a list of its own, beside the
    names' keyword list; a heading in more than 3 pages ("## Description") names no page."""
    def top(expansion):
        return conn.execute("select key->>'path', score from ai.search('kb', 'zzzqqq', k => 3, mode => 'keyword', "
                            "expansion => %s)", (expansion,)).fetchone()
    path, score = top("Run `NOTIFY` after the change.")
    assert path == "sql-notify.html" and score == pytest.approx(2 / 61)     # both lists rank it first
    described = conn.execute("select count(distinct path) from kb_chunks where chunk ~ '\n## Description\n'").fetchone()[0]
    assert described > 3
    assert top("See its `Description`.")[1] == pytest.approx(1 / 61)          # the names' list alone
    # a heading is matched as written: a name's pattern characters are themselves
    quoted = conn.execute("select ai_internal._regex_quote(%s)", ("a.b(c)[d]\\e|f*",)).fetchone()[0]
    assert conn.execute("select %s ~ %s, 'axb(c)[d]\\e|f*' ~ %s", ("a.b(c)[d]\\e|f*", quoted, quoted)).fetchone() == (True, False)


FTS_TEXTS = ["VACUUM FULL returns the space.", "string_agg(value, ', ') → text", "用 pg_size_pretty 查看表的大小",
             "CREATE INDEX CONCURRENTLY; don't lock writes", "行转列 crosstab() 函数", "e-mail ＩＤ１２ full‑width",
             "## 9.18.2. COALESCE", ""]


@hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.sampled_from(FTS_TEXTS),
                 st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=80)))
def test_fts_words_are_the_fts_columns_words(kb, conn, text):
    """ai_internal._fts_words (what keyword queries and the heading list match) must stem a text as
    the stores' generated fts column does: the column's own expression, read from the catalog, is
    run on the same text.  (A stored generated column cannot call the helper without rebuilding
    every store, so the two are kept equal by hand; this is the check.)"""
    store = conn.execute("select (ai_internal._search_target('kb', current_user)).store").fetchone()[0]
    expr = conn.execute("select pg_get_expr(d.adbin, d.adrelid) from pg_attrdef d join pg_attribute a "
                        "on a.attrelid = d.adrelid and a.attnum = d.adnum "
                        "where a.attname = 'fts' and d.adrelid = %s::regclass", (store,)).fetchone()[0]
    # (the expression is the install's own, from the catalog: safe to run as SQL)
    column = conn.execute(pgsql.SQL("select tsvector_to_array({}) from (select %s::text as chunk) s")
                          .format(pgsql.SQL(expr)), (text,)).fetchone()[0]
    helper = conn.execute("select ai_internal._fts_words(%s)", (text,)).fetchone()[0]
    assert sorted(column) == sorted(helper)


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_filter_applies_inside_each_retriever(db, mode):
    """A selective filter still returns k results, all matching it (k chunks: two documents match)."""
    hits = db.search("kb", "index", k=4, mode=mode, filter="section = 'datatype'", chunks_per_source=None)
    assert len(hits) == 4
    assert {h.key["path"] for h in hits} <= {"datatype-json.html", "datatype-uuid.html"}


def test_hybrid_fusion(conn, kb):
    """Chunk fusion scores each chunk by its own ranks; document fusion (the default) ranks source
    rows by their best chunk in each list and keeps a row's chunks together."""
    q = "which index types exist and how are they created"
    rows = conn.execute("select score, vector_rank, keyword_rank from ai.search('kb', %s, k => 30, fusion => 'chunk')",
                        (q,)).fetchall()
    assert rows and any(v and w for _, v, w in rows)
    for score, v, w in rows:
        assert score == pytest.approx((1 / (60 + v) if v else 0) + (1 / (60 + w) if w else 0))
    vector = conn.execute("select key->>'path' from ai.search('kb', %s, k => 120, mode => 'vector')", (q,)).fetchall()
    keyword = conn.execute("select key->>'path' from ai.search('kb', %s, k => 120, mode => 'keyword')", (q,)).fetchall()

    def doc_rank(hits, path):
        order = list(dict.fromkeys(p for (p,) in hits))
        return order.index(path) + 1 if path in order else None

    docs = conn.execute("select key->>'path', score from ai.search('kb', %s, k => 30)", (q,)).fetchall()
    paths = [p for p, _ in docs]
    assert [p for i, p in enumerate(paths) if i == 0 or paths[i - 1] != p] == list(dict.fromkeys(paths))
    assert [s for _, s in docs] == sorted((s for _, s in docs), reverse=True)
    for path, score in docs:
        v, w = doc_rank(vector, path), doc_rank(keyword, path)
        assert score == pytest.approx((1 / (60 + v) if v else 0) + (1 / (60 + w) if w else 0))


def test_results_read_as_documents(conn, kb):
    """Issue 38, item 6: by default at most two chunks of a document, together; the ranks shown are
    the ones that ordered the row (its document's in each list, by name in ``lists``), and each
    chunk has its own score beside its document's."""
    q = "which index types exist and how are they created"
    rows = conn.execute("select key->>'path', score, chunk_score, vector_rank, keyword_rank, lists "
                        "from ai.search('kb', %s, k => 12)", (q,)).fetchall()
    per_doc = Counter(path for path, *_ in rows)
    assert 6 <= len(rows) <= 12 and max(per_doc.values()) == 2      # (the test's pages: fewer than 12 rows)
    for path, score, chunk_score, v, w, lists in rows:
        assert set(lists) <= {"vector", "keyword"} and lists
        assert score == pytest.approx(sum(1 / (60 + x["rank"]) for x in lists.values()))
        assert (v, w) == (lists.get("vector", {}).get("rank"), lists.get("keyword", {}).get("rank"))
    pairs = [[r for r in rows if r[0] == path] for path, n in per_doc.items() if n == 2]
    assert pairs and all(a[1] == b[1] and a[2] >= b[2] for a, b in pairs)
    assert any(a[2] != b[2] for a, b in pairs)            # (the chunks' own scores differ)
    every = conn.execute("select key->>'path' from ai.search('kb', %s, k => 12, chunks_per_source => null)",
                         (q,)).fetchall()
    assert max(Counter(p for (p,) in every).values()) > 2
    # one list alone: its own score, and the rank in it
    (lists,) = conn.execute("select lists from ai.search('kb', %s, k => 1, mode => 'keyword')", (q,)).fetchone()
    assert list(lists) == ["keyword"] and lists["keyword"]["rank"] == 1


def test_search_errors(conn, kb):
    assert sql_error(conn, "select * from ai.search('nope', 'x')").sqlstate == "42704"
    e = sql_error(conn, "select * from ai.search('kb', 'x', mode => 'fuzzy')")
    assert e.sqlstate == "22023" and "vector, keyword, hybrid" in e.diag.message_hint
    assert sql_error(conn, "select * from ai.search('kb', 'x', k => 0)").sqlstate == "22023"
    assert sql_error(conn, "select * from ai.search('kb', 'x', fusion => 'page')").sqlstate == "22023"
    assert conn.execute("select count(*) from ai.search('kb', null)").fetchone()[0] == 0
    assert sql_error(conn, "select ai.rag('kb', '  ')").sqlstate == "22023"
    # a bad filter is the filter's error, short, with the source's columns — not the ranked lists' query
    for bad, state in (("nope = 1", "42703"), ("path = ", "42601")):
        e = sql_error(conn, "select * from ai.search('kb', 'x', mode => 'keyword', filter => %s)", (bad,))
        assert e.sqlstate == state and e.diag.message_primary.startswith("the filter is not a condition on public.kb: ")
        assert "path" in e.diag.message_hint and "union all" not in str(e).lower(), str(e)


def test_rag_answers_with_sources(db):
    a = db.ask("kb", "How do I create an index without locking writes to the table?")
    assert a.answered
    assert a.sources and a.sources[0]["n"] == 1
    paths = [s["key"]["path"] for s in a.sources]
    assert "sql-createindex.html" in paths
    assert max(paths.count(p) for p in paths) <= 2          # chunks_per_source: other pages get a say
    assert "concurrently" in a.answer.lower()
    assert a.usage["completion_tokens"] > 0
    from pgmind.evaluation import answer_faults             # never a pasted chunk, an echo or bare markers
    assert not answer_faults("How do I create an index without locking writes to the table?", a.answer,
                             [s["chunk"] for s in a.sources])


def test_rag_chinese_answer_in_chinese(db):
    a = db.ask("kb", "大熊猫主要吃什么?")
    assert a.answered and "zh/panda.md" in [s["key"]["path"] for s in a.sources]
    assert "竹" in a.answer


def test_rag_declines_when_nothing_passes_the_threshold(db, conn):
    a = db.ask("kb", "Who won the 2018 FIFA World Cup?")
    assert not a.answered and a.sources == []
    assert a.answer == conn.execute("select ai.rag_defaults()->>'decline_en'").fetchone()[0]
    z = db.ask("kb", "北京到上海的高铁要多久?")
    assert not z.answered and z.answer == conn.execute("select ai.rag_defaults()->>'decline_zh'").fetchone()[0]
    # why, with what was measured (issue 38, item 4): the best similarity, the bar, the near misses
    r = conn.execute("select ai.rag('kb', 'Who won the 2018 FIFA World Cup?')").fetchone()[0]
    d = r["decline"]
    assert d["reason"] == "below_threshold" and d["measure"] == "similarity"
    assert d["best"] == r["best_similarity"] < d["threshold"] == r["threshold"]
    assert 1 <= len(d["nearest"]) <= 3 and d["nearest"][0]["similarity"] == d["best"]      # nearest first
    assert [n["similarity"] for n in d["nearest"]] == sorted((n["similarity"] for n in d["nearest"]), reverse=True)
    # the bar in force is the model's calibrated one; the defaults do not show a number that is not
    (calibrated,) = conn.execute("""select (m.options->>'rag_threshold')::float8 from ai.vectorizer_status s
                                    join ai.models m on m.model_id = s.model
                                    where s.name = 'kb' and s.status = 'active'""").fetchone()
    assert r["threshold"] == calibrated and conn.execute("select ai.rag_defaults()->'threshold'").fetchone()[0] is None
    ok = conn.execute("select ai.rag_prompt('kb', 'What is the difference between json and jsonb?')").fetchone()[0]
    assert ok["answered"] and ok["decline"] is None and ok["best_similarity"] >= ok["threshold"]


def test_rag_streams(db):
    stream = db.ask("kb", "What is the difference between json and jsonb?", stream=True)
    pieces = list(stream)
    # the pieces are the model's draft as it writes it; the result is the draft checked against the
    # sources (the same check as ai.rag's), which keeps what the sources hold and quotes one
    r = stream.result
    assert len(pieces) > 1 and "".join(pieces) == (r.draft or r.answer)
    assert r.confidence in ("supported", "partly", "not_confirmed") and r.grounding["quote"]["text"] in r.answer
    assert "datatype-json.html" in [s["key"]["path"] for s in stream.result.sources]


def test_rag_logged(conn, db, flush_call_log):
    flush_call_log()
    marker = conn.execute("select coalesce(max(id), 0) from ai.call_log").fetchone()[0]
    assert db.ask("kb", "How do I create an index without locking writes to the table?").answered
    ops = logged_since(conn, flush_call_log, marker)
    assert "embed" in ops and "chat" in ops


def test_configure_rag(conn, db):
    try:
        cfg = conn.execute("""select ai.configure_rag('kb', '{"decline_en": "Not in these docs."}')""").fetchone()[0]
        assert cfg["decline_en"] == "Not in these docs." and cfg["k"] == 5
        assert db.ask("kb", "Who won the 2018 FIFA World Cup?").answer == "Not in these docs."
        assert sql_error(conn, """select ai.configure_rag('kb', '{"colour": "red"}')""").sqlstate == "22023"
    finally:
        conn.execute("""update ai.vectorizers set config = config - 'rag' where name = 'kb'""")


@pytest.fixture
def reader_key(conn, kb):
    """An API key of a role that may read the knowledge base (HTTP search runs as a role, never the
    install role's: the server's token searches as no one)."""
    conn.execute("drop owned by kb_reader" if conn.execute(
        "select 1 from pg_roles where rolname = 'kb_reader'").fetchone() else "select 1")
    conn.execute("drop role if exists kb_reader")
    conn.execute("create role kb_reader")
    store = conn.execute("select (ai_internal._search_target('kb', current_user)).store").fetchone()[0]
    conn.execute(f"grant select on {store}, kb to kb_reader")
    key = conn.execute("select ai.create_api_key('kb_reader')").fetchone()[0]
    yield key
    conn.execute("select ai.revoke_api_key(%s)", (key[:12],))
    conn.execute("drop owned by kb_reader")
    conn.execute("drop role kb_reader")


def test_http_search_and_ask(server, token, kb, reader_key):
    r = httpx.post(server + "/v1/search", json={"name": "kb", "query": "jsonb", "k": 3, "mode": "keyword"},
                   headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 403 and "API key" in r.json()["error"]["hint"]    # the operator searches as no one
    h = {"Authorization": f"Bearer {reader_key}"}
    r = httpx.post(server + "/v1/search", json={"name": "kb", "query": "jsonb", "k": 3, "mode": "keyword"},
                   headers=h, timeout=60)
    assert r.status_code == 200 and r.json()["results"][0]["key"]["path"] == "datatype-json.html"
    r = httpx.post(server + "/v1/search", json={"name": "kb", "query": "x", "k": 0}, headers=h)
    assert r.status_code == 400 and "k" in r.json()["error"]["message"]
    r = httpx.post(server + "/v1/search", json={"name": "nope", "query": "x"}, headers=h)
    assert r.status_code == 404
    r = httpx.post(server + "/v1/ask", json={"name": "kb", "question": "Who won the 2018 FIFA World Cup?"},
                   headers=h, timeout=120)
    assert r.json()["answered"] is False
    events = []
    with httpx.stream("POST", server + "/v1/ask", json={"name": "kb", "question": "大熊猫吃什么?", "stream": True},
                      headers=h, timeout=120) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert [e["type"] for e in events][-1] == "done"
    assert sum(1 for e in events if e["type"] == "delta") > 1
    assert events[-1]["sources"] and events[-1]["answered"]
    assert "/v1/ask" in httpx.get(server + "/openapi.json", headers={"Authorization": f"Bearer {token}"}).json()["paths"]


def test_ingest_rerun(conn, installed, settings, kb):
    """Unchanged files are skipped, changed ones re-embedded, deleted ones removed; a file whose
    bytes are the same but which this version reads differently (a row an older renderer wrote) is
    read again."""
    from pgmind.db import connect
    (kb / "zh/weather.md").write_text("# 天气\n\n上海的梅雨季节在六月。\n", encoding="utf-8")
    (kb / "zh/panda.md").unlink()
    page = conn.execute("select path, body from kb where path like '%.html' order by path limit 1").fetchone()
    conn.execute("update kb set body = body || ' | rendered by an older version |' where path = %s", (page[0],))
    try:
        with connect(installed) as c:
            r = ingest(c, kb, "kb")
        assert (r.changed, r.removed, r.unchanged) == (2, 1, len(PAGES))
        assert conn.execute("select body from kb where path = %s", (page[0],)).fetchone()[0] == page[1]
        assert conn.execute("select count(*) from kb_chunks where path = 'zh/panda.md'").fetchone()[0] == 0
        Worker(settings, installed, names=["kb"]).drain()
        chunks = conn.execute("select string_agg(chunk, ' ') from kb_chunks where path = 'zh/weather.md'").fetchone()[0]
        assert "梅雨" in chunks and "北京" not in chunks
    finally:
        (kb / "zh/panda.md").write_text(CHINESE["zh/panda.md"], encoding="utf-8")
        (kb / "zh/weather.md").write_text(CHINESE["zh/weather.md"], encoding="utf-8")
        with connect(installed) as c:
            ingest(c, kb, "kb")
        Worker(settings, installed, names=["kb"]).drain()


def test_ingest_pdf(installed, settings, conn, tmp_path):
    """PDFs are read page by page; a broken or password-protected one is reported, the others load."""
    from io import BytesIO

    from pypdf import PdfWriter

    from pdf_fixture import make_pdf
    from pgmind.db import connect
    (tmp_path / "wal.pdf").write_bytes(make_pdf(
        ["Write-ahead logging (WAL) guarantees durability:", "changes reach the log before the data files."],
        title="WAL (introduction)"))
    (tmp_path / "broken.pdf").write_bytes(make_pdf(["cut short"])[:150])
    locked = PdfWriter(clone_from=BytesIO(make_pdf(["secret"])))
    locked.encrypt("password", algorithm="RC4-128")
    with open(tmp_path / "locked.pdf", "wb") as f:
        locked.write(f)
    try:
        with connect(installed) as c:
            r = ingest(c, tmp_path, "pdfkb", model="use-m3")
        assert r.changed == 1 and r.language == "en"
        failed = dict(r.failed)
        assert set(failed) == {"broken.pdf", "locked.pdf"}
        assert "not a readable PDF" in failed["broken.pdf"] and "password" in failed["locked.pdf"]
        row = conn.execute("select title, body from pdfkb").fetchall()
        assert row == [("WAL (introduction)",
                        "Write-ahead logging (WAL) guarantees durability:\nchanges reach the log before the data files.")]
        Worker(settings, installed, names=["pdfkb"]).drain()
        hits = conn.execute("select key->>'path' from ai.search('pdfkb', 'what makes commits durable?', k => 1)").fetchall()
        assert hits == [("wal.pdf",)]
        # a repaired file loads on the next run; the good one is not read again
        (tmp_path / "broken.pdf").write_bytes(make_pdf(["MVCC keeps old row versions for readers."]))
        with connect(installed) as c:
            r = ingest(c, tmp_path, "pdfkb")
        assert (r.changed, r.unchanged, [p for p, _ in r.failed]) == (1, 1, ["locked.pdf"])
    finally:
        with connect(installed, autocommit=True) as c:
            c.execute("select ai.drop_vectorizer('pdfkb')")
            c.execute("drop table pdfkb")


def test_ingest_bad_input(installed, tmp_path):
    from pgmind.db import connect
    from pgmind.errors import InvalidRequestError
    with connect(installed) as c:
        with pytest.raises(InvalidRequestError, match="not a folder"):
            ingest(c, tmp_path / "missing", "kb2")
        with pytest.raises(InvalidRequestError, match="invalid table name"):
            ingest(c, tmp_path, "Bad-Name")


def test_eval_harness(db, tmp_path):
    from pgmind.errors import InvalidRequestError
    from pgmind.evaluation import evaluate_answers, evaluate_retrieval, load_questions
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in [
        {"question": "How do I load a CSV file into a table?", "lang": "en", "gold": ["sql-copy.html"], "facts": ["COPY"]},
        {"question": "大熊猫吃什么?", "lang": "zh", "gold": ["zh/panda.md"], "facts": ["竹"]},
        {"question": "Who won the 2018 FIFA World Cup?", "lang": "en", "gold": [], "facts": []},
    ]), encoding="utf-8")
    qs = load_questions(qfile)
    report = evaluate_retrieval(db, "kb", qs, ["hybrid"])
    assert report["hybrid"]["all"]["n"] == 2
    assert report["hybrid"]["all"]["recall@10"] == 1.0 and 0 < report["hybrid"]["all"]["mrr"] <= 1
    # retrieval is scored on source rows (pages): one chunk each, so ten results are ten pages
    hits = db.search("kb", "How do I load a CSV file into a table?", k=10, chunks_per_source=1)
    assert len(hits) > 1 and len({json.dumps(h.key, sort_keys=True) for h in hits}) == len(hits)
    answers = evaluate_answers(db, "kb", qs)
    assert answers["summary"]["all"]["declined"] == 1.0
    assert len(answers["answers"]) == 3
    # the threshold that separates them: the World Cup question is far from every chunk
    from pgmind.evaluation import calibrate_threshold
    c = calibrate_threshold(db, "kb", qs)
    assert (c["answerable"], c["unanswerable"], c["answerable_declined"], c["unanswerable_answered"]) == (2, 1, 0, 0)
    assert max(c["similarities"]["unanswerable"]) < c["threshold"] <= min(c["similarities"]["answerable"])
    with pytest.raises(InvalidRequestError, match="unanswerable"):
        calibrate_threshold(db, "kb", qs[:2])
    (tmp_path / "bad.jsonl").write_text('{"q": 1}\n')
    with pytest.raises(InvalidRequestError, match="bad.jsonl:1"):
        load_questions(tmp_path / "bad.jsonl")


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory, installed, server):
    """A real cross-encoder, made here (no weights ship offline): tiny, random, but loaded and run
    by the same CrossEncoder code path a downloaded reranker takes."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast
    d = tmp_path_factory.mktemp("cross-encoder")
    words = "create index concurrently lock table vacuum json jsonb copy csv file how do i what is the".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789") + words
    (d / "vocab.txt").write_text("\n".join(vocab))
    BertTokenizerFast(vocab_file=str(d / "vocab.txt")).save_pretrained(d)
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64, num_labels=1)).save_pretrained(d)
    from pgmind.db import connect
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.drop_model('tiny-rerank', if_exists => true)")
        c.execute("select ai.create_model('tiny-rerank', null, 'pgmind', 'rerank', 'tiny cross-encoder', "
                  "options => %s::jsonb)", (json.dumps({"path": str(d)}),))
    yield d
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.drop_model('tiny-rerank')")


def test_rerank_function(conn, tiny_reranker):
    from sentence_transformers import CrossEncoder
    docs = ["create index concurrently", "vacuum the table", "json and jsonb"]
    rows = conn.execute("select idx, score from ai.rerank('tiny-rerank', 'how do i create an index', %s) order by idx",
                        (docs[:2] + [None] + docs[2:],)).fetchall()
    assert [r[0] for r in rows] == [1, 2, 4]                 # NULL documents are skipped, positions kept
    expected = CrossEncoder(str(tiny_reranker)).predict([("how do i create an index", d) for d in docs])
    assert [r[1] for r in rows] == pytest.approx([float(x) for x in expected], abs=1e-4)
    e = sql_error(conn, "select * from ai.rerank('e5-small', 'q', array['d'])")
    assert e.sqlstate == "22023" and "not a rerank model" in e.diag.message_primary


def test_search_with_rerank(conn, kb, tiny_reranker):
    from sentence_transformers import CrossEncoder
    q = "create index concurrently"
    rows = conn.execute("select chunk, score from ai.search('kb', %s, k => 3, rerank => 'tiny-rerank')", (q,)).fetchall()
    assert len(rows) == 3
    scores = [r[1] for r in rows]
    assert scores == sorted(scores, reverse=True)
    ce = CrossEncoder(str(tiny_reranker))
    assert scores == pytest.approx([float(ce.predict([(q, r[0])])[0]) for r in rows], abs=1e-4)


def test_eval_with_rerank(db, tiny_reranker, tmp_path):
    from pgmind.evaluation import evaluate_retrieval, load_questions
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(json.dumps({"question": "create index concurrently", "lang": "en",
                                 "gold": ["sql-createindex.html"], "facts": []}))
    report = evaluate_retrieval(db, "kb", load_questions(qfile), ["hybrid"], rerank="tiny-rerank")
    assert set(report) == {"hybrid", "hybrid+rerank"}
    assert report["hybrid+rerank"]["all"]["n"] == 1


def test_http_rerank(server, token, tiny_reranker):
    r = httpx.post(server + "/v1/rerank", json={"model": "tiny-rerank", "query": "vacuum",
                                                "documents": ["a", "b", "c"], "top_n": 2},
                   headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 2 and results[0]["relevance_score"] >= results[1]["relevance_score"]
    r = httpx.post(server + "/v1/rerank", json={"model": "tiny-rerank", "query": "vacuum", "documents": []},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400


def test_cli_search_ask_eval(settings, kb, tmp_path):
    import subprocess
    import sys

    from pgmind.devserver import settings_env

    def run(*args):
        p = subprocess.run([sys.executable, "-m", "pgmind.cli", *args], env=settings_env(settings),
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        return p.stdout
    hits = json.loads(run("search", "jsonb", "--in", "kb", "-k", "2", "--mode", "keyword", "--json"))
    assert hits[0]["key"] == {"path": "datatype-json.html"} and len(hits) == 2
    # the text form too: keyword hits have no similarity
    out = run("search", "jsonb", "--in", "kb", "-k", "2", "--mode", "keyword")
    assert "1. datatype-json.html" in out and "similarity" not in out
    assert "similarity" in run("search", "jsonb", "--in", "kb", "-k", "2", "--mode", "vector")
    # a document a numbered line with its ranks, then its chunks (at most --chunks-per-source)
    out = run("search", "jsonb", "--in", "kb", "-k", "6", "--chunks-per-source", "3")
    assert "1. datatype-json.html" in out and "vector #" in out and "keyword #" in out
    every = json.loads(run("search", "jsonb", "--in", "kb", "-k", "6", "--chunks-per-source", "0", "--json"))
    assert len(every) == 6 and all("lists" in h and "chunk_score" in h for h in every)
    out = run("ask", "Who won the 2018 FIFA World Cup?", "--in", "kb")
    assert "does not contain the answer" in out and "(declined: the nearest passage's similarity" in out
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(json.dumps({"question": "jsonb", "lang": "en", "gold": ["datatype-json.html"], "facts": []}))
    report = json.loads(run("eval", "kb", str(qfile), "--mode", "keyword", "--json"))
    assert report["retrieval"]["keyword"]["all"]["recall@1"] == 1.0
    bad = subprocess.run([sys.executable, "-m", "pgmind.cli", "search", "x", "--in", "nope"],
                         env=settings_env(settings), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and 'vectorizer "nope" does not exist' in bad.stderr


def test_chat_model_reranker_and_declines_by_relevance(conn, server):
    """rerank-qwen-1.5b: the 1.5B chat model's yes/no judgement ranks the passage that answers first;
    ai.rag with a reranker in its settings declines when nothing is relevant enough."""
    docs = ["VACUUM reclaims storage occupied by dead tuples.",
            "CREATE INDEX CONCURRENTLY builds an index without locking out writes to the table.",
            "The default port of the server is 5432."]
    for q in ("How do I build an index without blocking writes?", "如何在不阻塞写入的情况下创建索引?"):
        scores = conn.execute("select idx, score from ai.rerank('rerank-qwen-1.5b', %s, %s) order by score desc",
                              (q, docs)).fetchall()
        assert scores[0][0] == 2 and 0 <= scores[-1][1] <= scores[0][1] <= 1, (q, scores)


def test_rag_with_a_reranker_declines_by_relevance(db, conn):
    conn.execute("""select ai.configure_rag('kb', '{"rerank": "rerank-qwen-1.5b", "rerank_candidates": 4,
                                                   "rerank_threshold": 0.72}')""")
    try:
        off = db.ask("kb", "Who won the 2018 FIFA World Cup?")
        assert not off.answered
        on = conn.execute("select ai.rag_prompt('kb', 'How do I create an index without locking the table?')").fetchone()[0]
        # the best chunk's relevance decides; then the ranked candidates are the sources
        assert on["answered"] and max(s["score"] for s in on["sources"]) >= 0.72
        assert sql_error(conn, """select ai.configure_rag('kb', '{"rerank_candidates": 0}')""").sqlstate == "22023"
    finally:
        conn.execute("""select ai.configure_rag('kb', '{"rerank": null}')""")


def test_rag_declines_questions_off_the_topic(db, conn, flush_call_log):
    """With a topic in its settings RAG first asks the chat model whether the question is about it
    (log-odds of yes against no, ai.topic_score) and declines one that is not before any search:
    the default port of MySQL sits as close to a PostgreSQL manual as a real question does."""
    reply = conn.execute("""select ai.chat('qwen-1.5b', '[{"role": "user", "content": "Say yes."}]',
                                           '{"max_tokens": 1, "logprobs": true, "top_logprobs": 3}')""").fetchone()[0]
    assert len(reply["logprobs"]["content"]) == 1 and len(reply["logprobs"]["content"][0]["top_logprobs"]) == 3
    assert "logprobs" not in conn.execute("""select ai.chat('qwen-0.5b', '[{"role": "user", "content": "hi"}]',
                                                            '{"max_tokens": 1}')""").fetchone()[0]
    assert conn.execute("select ai.topic_score('kb', 'How do I create an index?')").fetchone()[0] is None  # no topic
    conn.execute("""select ai.configure_rag('kb', '{"topic": "PostgreSQL"}')""")
    try:
        cut = conn.execute("select (ai.rag_defaults()->>'topic_threshold')::float8").fetchone()[0]
        on = ["How do I create an index without locking writes to the table?", "json 和 jsonb 有什么区别?"]
        off = ["How do I configure replication in MySQL?", "MongoDB 怎么建索引", "今天北京天气怎么样?"]
        scores = {q: conn.execute("select ai.topic_score('kb', %s)", (q,)).fetchone()[0] for q in on + off}
        assert all(scores[q] >= cut for q in on) and all(scores[q] < cut for q in off), scores
        flush_call_log()
        marker = conn.execute("select coalesce(max(id), 0) from ai.call_log").fetchone()[0]
        declined = conn.execute("select ai.rag('kb', %s)", (off[0],)).fetchone()[0]
        assert not declined["answered"] and declined["sources"] == [] and declined["topic_score"] < cut
        assert declined["decline"] == {"reason": "off_topic", "topic_score": declined["topic_score"],
                                       "topic_threshold": cut}
        assert declined["answer"] == conn.execute("select ai.rag_defaults()->>'decline_en'").fetchone()[0]
        ops = logged_since(conn, flush_call_log, marker)
        assert ops == ["chat"]                      # the one-token check; no search, no expansion
        answered = db.ask("kb", on[0])
        assert answered.answered and "concurrently" in answered.answer.lower()
        # turned off: no score, and the question is searched as before
        conn.execute("""select ai.configure_rag('kb', '{"topic_model": null}')""")
        assert conn.execute("select ai.topic_score('kb', %s)", (off[0],)).fetchone()[0] is None
        assert conn.execute("select ai.rag_prompt('kb', %s)->'topic_score'", (off[0],)).fetchone()[0] is None
        for bad in ('{"topic_threshold": "high"}', '{"topic_model": 3}', '{"topic_prompt": null}'):
            err = sql_error(conn, f"select ai.configure_rag('kb', '{bad}')")
            assert err.sqlstate == "22023" and "topic_threshold" in err.diag.message_hint, bad
        # a model without logprobs cannot check: an error that says what to do, not a silent pass
        conn.execute("""select ai.configure_rag('kb', '{"topic_model": "minilm"}')""")
        err = sql_error(conn, "select ai.topic_score('kb', 'vacuum')")
        assert err.sqlstate and err.diag.message_hint
    finally:
        conn.execute("""select ai.configure_rag('kb', '{"topic": null, "topic_model": "qwen-1.5b"}')""")


def test_rag_sources_are_their_best_sentences(kb, conn):
    """source_sentences: the prompt holds each chunk's title and its n sentences most similar to the
    question, in their order (the result's sources stay whole); null puts whole chunks in."""
    q = "How do I create an index without locking writes to the table?"
    conn.execute("""select ai.configure_rag('kb', '{"source_sentences": 2}')""")
    try:
        p = conn.execute("select ai.rag_prompt('kb', %s)", (q,)).fetchone()[0]
        conn.execute("""select ai.configure_rag('kb', '{"source_sentences": null}')""")
        whole = conn.execute("select ai.rag_prompt('kb', %s)", (q,)).fetchone()[0]
    finally:
        conn.execute("select ai.configure_rag('kb', jsonb_build_object('source_sentences', ai.rag_defaults()->'source_sentences'))")
    assert p["sources"] == whole["sources"] and p["answered"]
    text, full = p["messages"][-1]["content"], whole["messages"][-1]["content"]
    assert len(text) < len(full) / 2 and all(s["chunk"] in full for s in whole["sources"])
    import re
    for src in p["sources"]:
        part = text.split(f"[{src['n']}] ", 1)[1].split("\n\n[", 1)[0].split("\n\nQuestion:", 1)[0]
        pieces = [x.strip() for x in part.split(" … ")]
        title = src["chunk"].split("\n", 1)[0]
        if title.startswith("#"):
            assert pieces[0].startswith(title)
            pieces[0] = pieces[0][len(title):].strip()
        assert len(pieces) <= 2 or part.strip() == src["chunk"].strip()
        for piece in pieces:                      # every sentence is the chunk's own, in its order
            assert re.sub(r"\s+", " ", piece) in re.sub(r"\s+", " ", src["chunk"]), piece
    assert "concurrently" in text.lower()         # the sentence that answers is kept
    # Chinese sentences end without a space; the title stays, the sentence about bamboo is chosen
    chunk = "# 大熊猫\n大熊猫生活在四川。它们的毛是黑白的。大熊猫主要吃竹子，每天吃十几公斤。幼崽出生时很小。"
    def source_text(expansion, chunks, per_source):
        """The sources' text the compose route writes (the prompt is just {sources})."""
        settings = dict(conn.execute("select ai.rag_defaults()").fetchone()[0], source_sentences=per_source,
                        prompt_zh="{sources}", prompt_en="{sources}", system_zh="", system_en="")
        body = {"settings": settings, "name": "kb", "question": "熊猫吃什么?", "expansion": expansion,
                "model": "use-m3", "hits": [{"chunk": c} for c in chunks]}
        return conn.execute("select ai_internal._json_request('/pgmind/v1/rag/compose', %s)",
                            (json.dumps(body),)).fetchone()[0]["messages"][-1]["content"]
    text = source_text(None, [chunk], [1])
    assert text == "[1] # 大熊猫\n大熊猫主要吃竹子，每天吃十几公斤。\n\n", text
    # with an expansion, sentences are taken by turns: the question's best always stays, the
    # expansion's best comes second (a wrong expansion cannot push the question's best out)
    pick = lambda n: source_text("大熊猫的毛是黑白两色的", [chunk], [n])
    assert pick(1) == "[1] # 大熊猫\n大熊猫主要吃竹子，每天吃十几公斤。\n\n", pick(1)
    assert pick(2) == "[1] # 大熊猫\n它们的毛是黑白的。 … 大熊猫主要吃竹子，每天吃十几公斤。\n\n", pick(2)
    # an array gives a count per source rank, its last for every later source
    text = source_text(None, [chunk] * 3, [2, 1])
    parts = text.split("\n\n[")
    assert len(parts) == 3 and parts[0].count(" … ") == 1 and " … " not in parts[1] + parts[2], text
    assert all("大熊猫主要吃竹子" in x for x in parts), text
    conn.execute("""select ai.configure_rag('kb', '{"source_sentences": [3, 1]}')""")
    try:
        p = conn.execute("select ai.rag_prompt('kb', %s)", (q,)).fetchone()[0]
    finally:
        conn.execute("select ai.configure_rag('kb', jsonb_build_object('source_sentences', ai.rag_defaults()->'source_sentences'))")
    text = p["messages"][-1]["content"]
    first, rest = text.split("\n\n[2] ", 1)
    assert first.count(" … ") <= 2 and " … " not in rest, text
    for bad in ('0', '1.5', '"3"', '[]', '[0]', '[3, "2"]', '[3, null]', '[[3]]', '[3, 1.5]', '{"n": 3}',
                json.dumps([1] * 101)):
        err = sql_error(conn, "select ai.configure_rag('kb', %s)", (f'{{"source_sentences": {bad}}}',))
        assert err.sqlstate == "22023" and "source_sentences" in err.diag.message_hint, bad


def test_rag_counts_written_as_decimals_work(kb, conn):
    """2.0 is a whole number, as JSON Schema's integer takes it: configure_rag stores it and every
    ai.rag_prompt after it reads it as 2 (jsonb keeps the "2.0" text, which a plain ::int refuses)."""
    floats = {"k": 2.0, "chunks_per_source": 1.0, "context_tokens": 2000.0, "max_tokens": 64.0,
              "source_sentences": [2.0, 1]}
    before = conn.execute("select config->'rag' from ai.vectorizers where name = 'kb'").fetchone()[0]
    conn.execute("select ai.configure_rag('kb', %s)", (json.dumps(floats),))
    try:
        p = conn.execute("select ai.rag_prompt('kb', 'How do I create an index without locking writes?')").fetchone()[0]
    finally:
        conn.execute("""update ai.vectorizers set config = jsonb_set(config, '{rag}', coalesce(%s::jsonb, '{}'))
                        where name = 'kb'""", (json.dumps(before),))
    assert p["answered"] and len(p["sources"]) <= 2 and p["options"]["max_tokens"] == 64


COUNT_KEYS = {"k": 100, "chunks_per_source": 100, "rerank_candidates": 100, "context_tokens": 100000,
              "max_tokens": 100000, "source_sentences": 100}
JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 200), st.sampled_from([1.0, 2.5, -0.0, 1e300]),
                                 st.text(max_size=4)),
                       lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner,
                                                                                            max_size=2)),
                       max_leaves=8)


def _is_count(v, hi):
    return not isinstance(v, bool) and isinstance(v, (int, float)) and float(v).is_integer() and 1 <= v <= hi


@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(COUNT_KEYS)), JSONISH)
def test_rag_count_settings_are_checked(kb, conn, key, value):
    """A count setting is stored only when ai.rag_prompt can use it (a whole number in range; for
    source_sentences also null or a list of them, one per source rank); anything else is 22023 with a
    hint naming it, and the stored settings stay as they were."""
    hi = COUNT_KEYS[key]
    ok = _is_count(value, hi) or (key == "source_sentences" and (
        value is None or (isinstance(value, list) and 1 <= len(value) <= 100 and all(_is_count(x, hi) for x in value))))
    before = conn.execute("select config->'rag' from ai.vectorizers where name = 'kb'").fetchone()[0]
    try:
        conn.execute("select ai.configure_rag('kb', %s)", (json.dumps({key: value}),))
        assert ok, (key, value)
    except psycopg.Error as e:
        if "\\u0000" in json.dumps(value):    # jsonb holds no NUL: PostgreSQL refuses the argument itself
            assert e.sqlstate == "22P05", (key, value, e)
        else:
            assert not ok and e.sqlstate == "22023" and key in e.diag.message_hint, (key, value, e)
        assert conn.execute("select config->'rag' from ai.vectorizers where name = 'kb'").fetchone()[0] == before
    finally:
        conn.execute("select ai.configure_rag('kb', jsonb_build_object(%s::text, ai.rag_defaults()->%s))", (key, key))


def test_prompt_templates_are_filled_once(kb, conn):
    """A template's {placeholders} are filled in one pass: a question that contains "{sources}" is not
    filled again; the answer prompt may name the knowledge base's topic (else its name)."""
    # (the filling itself: tests/test_rag_text.py)
    (saved,) = conn.execute("select config->'rag' from ai.vectorizers where name = 'kb'").fetchone()
    conn.execute("""select ai.configure_rag('kb', '{"prompt_en": "About {topic}. {sources}Q: {question}",
                                                     "topic_model": null, "topic": null}')""")
    try:
        q = "How do I create an index without locking writes? {sources} {topic}"
        text = conn.execute("select ai.rag_prompt('kb', %s)", (q,)).fetchone()[0]["messages"][-1]["content"]
        assert text.startswith("About kb. [1] ") and text.endswith("Q: " + q) and text.count("[1] ") == 1
        conn.execute("""select ai.configure_rag('kb', '{"topic": "PostgreSQL"}')""")
        text = conn.execute("select ai.rag_prompt('kb', %s)", (q,)).fetchone()[0]["messages"][-1]["content"]
        assert text.startswith("About PostgreSQL. [1] ")
    finally:
        conn.execute("update ai.vectorizers set config = case when %s::jsonb is null then config - 'rag' "
                     "else jsonb_set(config, '{rag}', %s::jsonb) end where name = 'kb'",
                     (json.dumps(saved) if saved else None, json.dumps(saved) if saved else None))


def test_calibration_cuts_the_topic_then_the_similarity(db, conn, tmp_path):
    from pgmind.evaluation import calibrate_threshold, load_questions
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in [
        {"question": "How do I create an index without locking writes?", "lang": "en",
         "gold": ["sql-createindex.html"], "facts": []},
        {"question": "json 和 jsonb 有什么区别?", "lang": "zh", "gold": ["datatype-json.html"], "facts": []},
        {"question": "How do I configure replication in MySQL?", "lang": "en", "gold": [], "facts": []},
    ]), encoding="utf-8")
    conn.execute("""select ai.configure_rag('kb', '{"topic": "PostgreSQL"}')""")
    try:
        c = calibrate_threshold(db, "kb", load_questions(qfile))
    finally:
        conn.execute("""select ai.configure_rag('kb', '{"topic": null}')""")
    assert (c["topic"]["answerable_declined"], c["topic"]["unanswerable_answered"]) == (0, 0)
    # the topic check declined the MySQL question: the similarity cut keeps both answerable ones
    assert c["unanswerable"] == 0 and c["threshold"] < min(c["similarities"]["answerable"])
    assert c["total"] == {"answerable_declined": 0, "unanswerable_answered": 0, "answerable": 2, "unanswerable": 1}


def test_split_model_assembly_is_checked(tmp_path, monkeypatch):
    """A model assembled from parts that do not add up (size or sha256) is refused, never loaded."""
    from pgmind.errors import ModelLoadError
    from pgmind.models.local.assets import SplitModel, gguf_path
    for i, data in enumerate((b"abc", b"def"), 1):
        (tmp_path / f"fake_part{i}.py").write_text(f"def get_part_path():\n    return {str(tmp_path / f'p{i}.bin')!r}\n")
        (tmp_path / f"p{i}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path))
    import hashlib
    good = SplitModel("fake", "fake.gguf", 6, hashlib.sha256(b"abcdef").hexdigest(), ("fake_part1", "fake_part2"), "x")
    assert gguf_path(good, tmp_path / "models").read_bytes() == b"abcdef"
    bad = SplitModel("fake", "bad.gguf", 6, "0" * 64, ("fake_part1", "fake_part2"), "x")
    with pytest.raises(ModelLoadError, match="sha256"):
        gguf_path(bad, tmp_path / "models")
    assert not (tmp_path / "models" / "bad.gguf").exists()
    missing = SplitModel("fake", "m.gguf", 6, "0" * 64, ("no_such_part_module",), "x")
    with pytest.raises(ModelLoadError, match="not installed"):
        gguf_path(missing, tmp_path / "models")


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
def test_sql_language_is_the_python_rule(conn, text):
    """ai_internal._text_language (SQL decides with it whether to call the translation model) is the
    twin of pgmind.rag.text.language (which chooses the prompts): they must agree."""
    from pgmind.rag.text import language
    assert conn.execute("select ai_internal._text_language(%s)", (text,)).fetchone()[0] == language(text)


@pytest.mark.parametrize("provider,path", [("openai", "/v1"), ("dashscope", "/api/v1")])
def test_answers_of_a_remote_chat_model_are_checked_too(kb, conn, provider, path):
    """The same check against the sources around any chat model: one statement switches the
    knowledge base to a remote model (here a stand-in replaying the provider's documented replies),
    and its wrong value is left out of the answer as the local model's would be."""
    from standins import StandIn
    standin = StandIn(dim=8)
    (saved,) = conn.execute("select config->'rag' from ai.vectorizers where name = 'kb'").fetchone()
    try:
        conn.execute("select ai.create_model('remote-chat', %s, %s, 'chat', 'some-model', "
                     "'{\"author_type\":\"token\",\"token\":\"sk-test\"}')", (standin.url + path, provider))
        conn.execute("""select ai.configure_rag('kb', '{"model": "remote-chat"}')""")
        standin.chat_reply = ("Build it with `CREATE INDEX CONCURRENTLY` [1]. "
                              "It needs 7391 seconds per gigabyte and `pg_build_index_quietly()` [1].")
        r = conn.execute("select ai.rag('kb', 'How do I create an index without locking writes?')").fetchone()[0]
        assert r["model"] == "remote-chat" and r["answered"]
        assert r["answer"].startswith("Build it with `CREATE INDEX CONCURRENTLY` [") and "7391" not in r["answer"]
        assert "pg_build_index_quietly" not in r["answer"] and r["draft"] == standin.chat_reply
        assert r["confidence"] == "partly" and len(r["grounding"]["removed"]) == 1
        unsupported = {c["text"] for c in r["grounding"]["claims"] if not c["supported"]}
        assert unsupported == {"7391", "pg_build_index_quietly"}
        # turned off, the model's answer is returned as written
        conn.execute("""select ai.configure_rag('kb', '{"ground": false}')""")
        r = conn.execute("select ai.rag('kb', 'How do I create an index without locking writes?')").fetchone()[0]
        assert r["answer"] == standin.chat_reply and r["confidence"] is None
    finally:
        conn.execute("update ai.vectorizers set config = jsonb_set(config, '{rag}', %s) where name = 'kb'",
                     (json.dumps(saved or {}),))
        conn.execute("select ai.drop_model('remote-chat', if_exists => true)")
        standin.close()
