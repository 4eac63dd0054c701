"""The Python API (pgmind.client.Pgmind), the library under the CLI: plain data back, PgmindErrors out,
progress through callbacks.  Against the real test cluster and model server."""
from __future__ import annotations

import dataclasses
import json

import pytest
from rich.table import Table

from conftest import free_port
from pgmind.client import EmbedProgress, Pgmind, TrainingJob, connect
from pgmind.errors import DatabaseError, InvalidRequestError, PgmindError, UnknownModelError
from pgmind.evaluation import Question, report_lines


@pytest.fixture
def db(settings, installed):
    with Pgmind(settings=settings) as d:
        yield d


def test_connection_opens_on_first_use(settings, installed):
    lost = Pgmind(settings=dataclasses.replace(settings, pg_port=free_port()))   # no error yet
    with pytest.raises(DatabaseError, match="cannot connect"):
        lost.models()
    lost.close()
    with pytest.raises(DatabaseError):
        connect("postgresql://127.0.0.1:1/nowhere")        # connect() connects at once


def test_models_are_plain_data(db, server):
    models = {m["model_id"]: m for m in db.models()}
    e5 = models["e5-small"]
    assert (e5["type"], e5["dimensions"], e5["url"]) == ("embedding", 384, None)
    assert models["qwen-0.5b"]["dimensions"] is None and "public" in e5["granted_to"]
    assert db.model("use-m3")["dimensions"] == 512
    with pytest.raises(UnknownModelError) as info:
        db.model("nope")
    assert info.value.message == 'model "nope" is not registered' and "pgmind models list" in info.value.hint


def test_add_model(db, conn):
    try:
        db.add_model("client-chat", provider="openai", type="chat", name="gpt-4o-mini", url="http://127.0.0.1:9/v1",
                     key_env="OPENAI_API_KEY", options={"timeout": 5})
        row = conn.execute("select provider, auth, options->>'timeout' from ai.models "
                           "where model_id = 'client-chat'").fetchone()
        assert row == ("openai", {"author_type": "env", "env": "OPENAI_API_KEY"}, "5")
        with pytest.raises(PgmindError, match="already exists"):
            db.add_model("client-chat", provider="openai", type="chat", name="x")
        with pytest.raises(InvalidRequestError):        # (the SQL error, mapped: SQLSTATE 22P02)
            db.add_model("client-bad", provider="openai", type="chat", name="x", options="{not json")
    finally:
        conn.execute("select ai.drop_model('client-chat', if_exists => true)")


def test_test_model(db, server):
    t = db.test_model("e5-small", "hello")
    assert (t.model, t.model_type, len(t.output)) == ("e5-small", "embedding", 384) and t.seconds > 0
    with pytest.raises(UnknownModelError):
        db.test_model("nope")


def test_status(db, settings, server):
    st = db.status()
    assert st["ok"] and st["database"]["ok"] and st["database"]["migrations"] > 0
    assert st["model_server"] == {"ok": True, "url": settings.effective_server_url, "status": 200}
    with Pgmind(settings=dataclasses.replace(settings, server_port=free_port())) as other:
        st = other.status()
    assert not st["ok"] and st["database"]["ok"] and st["model_server"]["status"] is None
    with Pgmind(settings=dataclasses.replace(settings, pg_port=free_port())) as other:
        st = other.status()                             # (reported, not raised)
    assert not st["database"]["ok"] and "cannot connect" in st["database"]["error"]


# -- a knowledge base, from ingest to evaluation --------------------------------------------------
@pytest.fixture(scope="module")
def kb(settings, installed, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clientkb")
    (folder / "hnsw.md").write_text("# HNSW\n\nCreate an HNSW index with CREATE INDEX ... USING hnsw.\n")
    (folder / "panda.md").write_text("# 熊猫\n\n熊猫吃竹子。\n", encoding="utf-8")
    (folder / "empty.txt").write_text("")
    with Pgmind(settings=settings) as d:
        reads: list = []
        result = d.ingest(folder, "clientkb", progress=lambda i, n: reads.append((i, n)))
        assert (result.files, result.changed, dict(result.skipped)) == (3, 2, {"empty.txt": "an empty file"})
        assert reads[0] == (0, None) and reads[-1] == (3, 3)      # once connected, then as files are read
        yield d, folder
        d.conn.execute("select ai.drop_vectorizer('clientkb')")
        d.conn.execute("drop table clientkb")


def test_embed_pending_and_status(kb, server):
    db, _ = kb
    (status,) = [v for v in db.vectorizer_status() if v["name"] == "clientkb"]
    assert (status["pending"], status["done"], status["model"]) == (2, 0, "e5-small")
    seen: list[EmbedProgress] = []
    totals = db.embed_pending("clientkb", batch=1, progress=seen.append)
    assert seen[0] == EmbedProgress(0, 2, 0, 0.0) and seen[-1].done == 2 and seen[-1].chunks == totals.chunks
    assert (totals.rows, totals.quarantined) == (2, 0)
    (status,) = [v for v in db.vectorizer_status() if v["name"] == "clientkb"]
    assert (status["pending"], status["done"]) == (0, 2)
    again = db.backfill("clientkb")                     # every row queued again, and embedded here
    assert again.rows == 2
    assert db.run_worker(["clientkb"], once=True).rows == 0


def test_search_ask_and_decline(kb, server):
    db, _ = kb
    db.embed_pending("clientkb")
    hits = db.search("clientkb", "hnsw index", k=1)
    assert hits[0].key == {"path": "hnsw.md"}
    answer = db.ask("clientkb", "What is the capital of France?", threshold=0.99)
    assert not answer.answered and answer.sources == []
    stream = db.ask("clientkb", "What is the capital of France?", threshold=0.99, stream=True)
    assert "".join(stream) == answer.answer and not stream.result.answered


def test_evaluate(kb, server):
    db, folder = kb
    questions = [Question("how to create an hnsw index", "en", ("hnsw.md",), ("hnsw",)),
                 Question("熊猫吃什么", "zh", ("panda.md",), ("竹子",)),
                 Question("what is the capital of France", "en", (), ())]
    report = db.evaluate("clientkb", questions, modes=["vector", "keyword"], calibrate=True)
    assert set(report["retrieval"]) == {"vector", "keyword"}
    assert report["retrieval"]["vector"]["all"]["n"] == 2 and report["retrieval"]["vector"]["zh"]["recall@1"] == 1.0
    assert report["threshold"]["total"]["answerable"] == 2
    lines = report_lines(report, "clientkb")
    assert isinstance(lines[0], Table) and lines[0].row_count == 6
    assert lines[-1].startswith("best RAG threshold: ") and "ai.configure_rag('clientkb', '{\"threshold\": " in lines[-1]
    path = folder.parent / "questions.jsonl"
    path.write_text(json.dumps({"question": "hnsw", "lang": "en", "gold": ["hnsw.md"]}) + "\n")
    assert db.evaluate("clientkb", str(path), modes=["keyword"])["retrieval"]["keyword"]["all"]["recall@1"] == 1.0
    with pytest.raises(InvalidRequestError, match="unknown mode 'bogus'"):
        db.evaluate("clientkb", questions, modes=["bogus"])


def test_training_job(kb, conn, server):
    db, _ = kb
    with pytest.raises(PgmindError, match='vectorizer "nope" does not exist'):
        db.finetune("nope")
    pairs = "select 'question ' || g, 'no-such-page-' || g from generate_series(1, 8) g"
    seen: list = []
    job = db.finetune("clientkb", name="client-ft-failed", pairs=pairs, progress=lambda j, f: seen.append((j, f)))
    assert isinstance(job, TrainingJob) and job.ran_here and job.state == "failed"
    assert job.new_model == "client-ft-failed"          # (its id; registered only when done)
    assert "0 usable pairs of 8" in job.error and seen[0] == (job.id, 0.0)

    # a model server's trainer claims the job first: the call follows the job's row to its end and
    # reports what the row says (issue 38, item 2), never an end of its own
    import threading
    followed: list = []

    def taken(job_id, fraction):
        followed.append(fraction)
        if len(followed) > 1:
            return
        conn.execute("update ai.training_jobs set state = 'running', worker_id = 'server-host:1', "
                     "heartbeat_at = now(), progress = 0.5 where id = %s", (job_id,))

        def the_server_ends_it():
            conn.execute("""update ai.training_jobs set state = 'done', progress = 1, finished_at = now(),
                            metrics = '{"after": {"mrr": 0.9}}' where id = %s""", (job_id,))
        threading.Timer(1.5, the_server_ends_it).start()
    job = db.finetune("clientkb", name="client-ft-elsewhere", pairs=pairs, progress=taken)
    try:
        assert not job.ran_here and job.state == "done" and job.metrics == {"after": {"mrr": 0.9}}
        assert 0.5 in followed[1:]                      # its progress, from the row, while it ran there
    finally:
        conn.execute("delete from ai.training_jobs where id = %s", (job.id,))


def test_a_busy_model_server_is_not_called_unreachable(tmp_path, monkeypatch):
    """An answer that does not start in time says the server is busy, not "cannot reach it, start
    pgmind serve" (a timeout is an httpx TransportError too); a closed port still says unreachable."""
    import socket

    from pgmind import client
    from pgmind.config import load_settings
    from pgmind.errors import ModelServerUnavailableError
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()                                # accepts, never answers: a server busy elsewhere
    prompt = {"answered": True, "model": "m", "messages": [], "options": {}, "sources": []}
    monkeypatch.setattr(client, "ANSWER_WAIT", 1.0)
    try:
        busy = load_settings(home=str(tmp_path), server_url=f"http://127.0.0.1:{listener.getsockname()[1]}")
        with pytest.raises(ModelServerUnavailableError, match="did not start the answer within 1 s") as e:
            list(client.AnswerStream(busy, prompt, "token"))
        assert "busy" in e.value.hint
    finally:
        listener.close()
    gone = load_settings(home=str(tmp_path), server_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ModelServerUnavailableError, match="cannot reach the model server") as e:
        list(client.AnswerStream(gone, prompt, "token"))
    assert "pgmind serve" in e.value.hint
