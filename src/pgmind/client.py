"""The Python API: one library under every front end (the CLI, and the web console to come).

    import pgmind
    db = pgmind.connect()                       # PGMIND_DSN, or the embedded cluster
    db.search("pg_docs", "如何创建 HNSW 索引", k=5)
    answer = db.ask("pg_docs", "How do I create an index without locking the table?")
    for piece in db.ask("pg_docs", "...", stream=True): print(piece, end="")

Every method returns plain data (dataclasses, dicts, lists) and never prints; errors are
:class:`~pgmind.errors.PgmindError`s (a database error keeps its SQLSTATE, message and hint).  Long
jobs (ingest, embedding, training) take a ``progress`` callback.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import httpx
import psycopg

from .config import Settings, load_settings
from .db import connect as db_connect, resolve_dsn
from .db.connection import from_sql_error
from .errors import ModelServerUnavailableError, PgmindError, UnknownModelError
from .rag.grounding import checked_reply

if TYPE_CHECKING:
    from .db.migrate import InstallResult
    from .images.collection import ImageHit, ImageIngestResult
    from .ingest import IngestResult
    from .vectorizer.worker import BatchResult


@dataclass(frozen=True)
class Hit:
    key: dict
    chunk_seq: int
    chunk: str
    score: float
    similarity: float | None
    vector_rank: int | None
    keyword_rank: int | None
    chunk_score: float | None = None    # the chunk's own score (score is what ordered its row)
    lists: dict | None = None           # each fused list's rank and score: {"vector": {"rank", "score"}, ...}


@dataclass
class Answer:
    """``answer`` is checked against its sources (pgmind.rag.grounding) unless the knowledge base
    turned the check off: ``confidence`` is supported / partly / not_confirmed (None for a decline
    or unchecked), ``draft`` the model's own words when the check changed them."""
    answer: str
    sources: list[dict]
    answered: bool
    usage: dict | None = None
    model: str | None = None
    confidence: str | None = None
    draft: str | None = None
    grounding: dict | None = None
    decline: dict | None = None     # why it declined (ai.rag's "decline"): reason and what was measured


@dataclass(frozen=True)
class ModelTest:
    """One call of a model through SQL: ``output`` is the vector (embedding), the text (chat) or the
    JSON result (any other type)."""
    model: str
    model_type: str
    output: Any
    seconds: float


@dataclass(frozen=True)
class EmbedProgress:
    """How far embedding a vectorizer's queue got: source rows done of ``total`` queued when it began."""
    done: int
    total: int
    chunks: int
    seconds: float


@dataclass(frozen=True)
class TrainingJob:
    """A training job's end, as its row in ai.training_jobs says: its state (done, failed, cancelled),
    metrics, error, and the new model's id (registered when the state is done).  ``ran_here`` is
    false when another runner (a model server's trainer) ran it to its end."""
    id: int
    state: str
    metrics: dict
    error: str | None
    new_model: str | None
    ran_here: bool = True


DEFAULT_TEST_TEXT = "PostgreSQL 是一个数据库。PostgreSQL is a database."


def _unknown_model(model: str) -> UnknownModelError:
    return UnknownModelError(f'model "{model}" is not registered', hint="see `pgmind models list`")


@contextmanager
def _sql_errors() -> Iterator[None]:
    """A database error as the library's error (its SQLSTATE, message and hint kept)."""
    try:
        yield
    except psycopg.Error as e:
        raise from_sql_error(e) from None


class Pgmind:
    """A pgmind database and its model server, as the connecting role.  The connection opens on
    first use (``pgmind.connect()`` opens it at once)."""

    def __init__(self, dsn: str | None = None, settings: Settings | None = None):
        self.settings = settings or load_settings(dsn=dsn)
        self.dsn = resolve_dsn(self.settings)
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None:
            self._conn = db_connect(self.dsn, autocommit=True, application_name="pgmind client")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> "Pgmind":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _query(self, query: str, params) -> list:
        with _sql_errors():
            return self.conn.execute(query, params).fetchall()

    # -- the database and the model server ------------------------------------------------------
    def status(self) -> dict:
        """Is everything up?  {"ok", "database": {"ok", "migrations", "error"},
        "model_server": {"ok", "url", "status" (None: not reachable)}}; the database is ok when
        reachable with the ai schema installed."""
        from .db import installed_version
        try:
            with _sql_errors():
                migrations = len(installed_version(self.conn))
            database = {"ok": migrations > 0, "migrations": migrations, "error": None}
        except PgmindError as e:
            database = {"ok": False, "migrations": 0, "error": e.message}
        url = self.settings.effective_server_url
        try:
            code: int | None = httpx.get(url + "/health", timeout=3).status_code
        except httpx.HTTPError:
            code = None
        server = {"ok": code == 200, "url": url, "status": code}
        return {"ok": database["ok"] and server["ok"], "database": database, "model_server": server}

    def install(self) -> InstallResult:
        """Create or upgrade the ai schema (safe to re-run) and pgmind's service roles (their
        passwords in owner-only files under the home), and tell the database where the model server
        listens.  Run by a superuser."""
        from .db import install
        from .db.migrate import SERVICE_ROLES
        settings = self.settings
        settings.server_token(create=True)      # (the server's own; it is not shared with the database)
        with db_connect(self.dsn, register_vector=False) as conn:
            return install(conn, server_url=settings.effective_server_url,
                           role_passwords={r: settings.role_password(r, create=True) for r in SERVICE_ROLES})

    # -- models ---------------------------------------------------------------------------------
    def models(self) -> list[dict]:
        """The models this role may use: model_id, provider, type, name, dimensions (None when not
        fixed), url (None: local), granted_to (roles).  Secrets are never read."""
        rows = self._query("""select model_id, provider, model_type, model_name, dimensions, url, granted_to
                              from ai.models order by model_id""", None)
        keys = ("model_id", "provider", "type", "name", "dimensions", "url", "granted_to")
        return [dict(zip(keys, r)) for r in rows]

    def model(self, model: str) -> dict:
        """One model's registration (ai.models' row; a secret shows as "********")."""
        rows = self._query("select to_jsonb(m) from ai.models m where model_id = %s", (model,))
        if not rows:
            raise _unknown_model(model)
        return rows[0][0]

    def add_model(self, model: str, *, provider: str, type: str, name: str, url: str | None = None,
                  key_env: str | None = None, options: dict | str = "{}") -> None:
        """Register a model.  The API key is never passed: ``key_env`` names the model server's
        environment variable that holds it."""
        auth = {"author_type": "env", "env": key_env} if key_env else {}
        self._query("select ai.create_model(%s, %s, %s, %s, %s, %s::jsonb, options => %s::jsonb)",
                    (model, url, provider, type, name, json.dumps(auth),
                     options if isinstance(options, str) else json.dumps(options)))

    def test_model(self, model: str, text: str = DEFAULT_TEST_TEXT) -> ModelTest:
        """Call a model once through SQL (the whole path: database, model server, model), timed."""
        rows = self._query("select model_type from ai.models where model_id = %s", (model,))
        if not rows:
            raise _unknown_model(model)
        mtype = rows[0][0]
        start = time.perf_counter()
        if mtype == "embedding":
            (row,) = self._query("select ai.embed(%s, %s)::real[]", (model, text))
        elif mtype == "chat":
            (row,) = self._query("select ai.generate(%s, %s, options => '{\"max_tokens\": 64}')", (model, text))
        else:
            (row,) = self._query("select ai.call_model(%s, %s)", (model, text))
        return ModelTest(model, mtype, row[0], time.perf_counter() - start)

    # -- vectorizers ----------------------------------------------------------------------------
    def vectorizer_status(self) -> list[dict]:
        """Each vectorizer version's pending, leased, done and failed rows, lag and throughput."""
        rows = self._query("""select name, version, status, model, pending, leased, coalesce(done, 0), errors,
                                     coalesce(extract(epoch from lag)::int, 0), round(rows_per_second, 2),
                                     coalesce(last_error, ''), paused, extract(epoch from eta)::int, state, workers
                              from ai.vectorizer_status order by name, version""", None)
        keys = ("name", "version", "status", "model", "pending", "leased", "done", "errors", "lag_seconds",
                "rows_per_second", "last_error", "paused", "eta_seconds", "state", "workers")
        return [dict(zip(keys, r)) for r in rows]

    def backfill(self, name: str, *, batch: int = 32, progress: Callable | None = None, ray: str | None = None,
                 requeue: bool | None = None, actors: int | None = None, lease: float = 120.0):
        """Queue every row of the vectorizer's source table and embed them here (embed_pending), and
        return the worker's BatchResult.  With ``ray`` ("auto" for a local cluster, or a cluster's
        HOST:PORT or ray://HOST:PORT) the vectorizer's queue is embedded on a Ray cluster instead
        (pgmind.vectorizer.ray_backfill; a RayBackfillResult; progress gets RayProgress), through
        the workers' own leases and write path.  ``requeue`` (queue every row first) defaults to
        True here and False with Ray, so that a Ray re-run resumes where the last one stopped."""
        if ray is None:
            if requeue is not False:
                self._query("select ai.vectorizer_backfill(%s)", (name,))
            return self.embed_pending(name, batch=batch, progress=progress)
        from .vectorizer.ray_backfill import backfill
        with _sql_errors():
            return backfill(self.settings, self.dsn, name, address=ray, actors=actors, batch_rows=batch,
                            lease_seconds=lease, requeue=bool(requeue), progress=progress)

    def pause_vectorizer(self, name: str) -> bool:
        """Stop workers and Ray backfills claiming the vectorizer's queue (ai.pause_vectorizer; the
        table's owner or an administrator); False when it was paused already."""
        (row,) = self._query("select ai.pause_vectorizer(%s)", (name,))
        return row[0]

    def resume_vectorizer(self, name: str) -> bool:
        """Undo pause_vectorizer (ai.resume_vectorizer); False when it was not paused."""
        (row,) = self._query("select ai.resume_vectorizer(%s)", (name,))
        return row[0]

    def embed_pending(self, name: str, *, batch: int = 32,
                      progress: Callable[[EmbedProgress], None] | None = None) -> BatchResult:
        """Run a vectorizer worker here (as pgmind's service role) until the vectorizer's queue is
        empty; ``progress`` is called once before the first batch and after each round."""
        from .vectorizer.worker import Worker
        (row,) = self._query("select coalesce(sum(pending + leased), 0)::int from ai.vectorizer_status "
                             "where name = %s", (name,))
        total, done = row[0], 0
        w = Worker(self.settings, self.dsn, names=[name], batch_rows=batch, poll_interval=0.5)
        start = time.monotonic()

        def on_batch(rows: int) -> None:
            nonlocal done
            done += rows
            if progress:
                progress(EmbedProgress(done, total, w.totals.chunks, time.monotonic() - start))
        try:
            if progress:
                progress(EmbedProgress(0, total, 0, 0.0))
            with _sql_errors():
                w.drain(timeout=None, on_batch=on_batch)
        finally:
            w.close()
        return w.totals

    def run_worker(self, names: list[str] | None = None, *, batch: int = 32, lease: float = 120.0,
                   once: bool = False, stop=None) -> BatchResult:
        """A vectorizer worker (as pgmind's service role) over these vectorizers (None: all): with
        ``once`` until the queues are empty, else until ``stop`` (a threading.Event) is set."""
        from .vectorizer.worker import Worker
        w = Worker(self.settings, self.dsn, names=names, batch_rows=batch, lease_seconds=lease)
        try:
            with _sql_errors():
                if once:
                    w.drain(timeout=None)          # a backlog may take hours: no deadline
                else:
                    w.run(stop)
        finally:
            w.close()
        return w.totals

    # -- knowledge bases ------------------------------------------------------------------------
    def ingest(self, sources: str | Path | Sequence[str | Path], name: str, *, model: str = "e5-small",
               topic: str | None = None, rows: bool = False,
               progress: Callable[[int, int | None], None] | None = None) -> IngestResult:
        """Load a folder of documents and/or web pages (http(s) URLs under ai.load_allow_list; at
        most one folder) into table ``name`` with a vectorizer (pgmind.ingest.ingest); the
        vectorizer's queue then holds what changed (embed_pending, or a worker, embeds it).
        ``progress(read, files_and_pages)`` is called once connected (None: not counted yet) and as
        files and pages are read."""
        from .ingest import ingest
        with _sql_errors(), db_connect(self.dsn) as conn:
            if progress:
                progress(0, None)
            return ingest(conn, sources, name, model=model, topic=topic, rows=rows, progress=progress)

    def ingest_images(self, folder: str | Path, name: str, *, model: str = "image-features",
                      store_bytes: bool = False, ocr: bool = False, allow_load: bool = False,
                      progress: Callable[[int, int | None], None] | None = None) -> ImageIngestResult:
        """Load a folder of pictures into table ``name`` with an image vectorizer; ``progress`` as
        ingest's.  Without ``store_bytes`` the folder must be on ai.load_file's allow-list, or
        ``allow_load`` adds it (administrators)."""
        from .images.collection import ingest_images
        with _sql_errors(), db_connect(self.dsn) as conn:
            if progress:
                progress(0, None)
            return ingest_images(conn, folder, name, model=model, store_bytes=store_bytes, ocr=ocr,
                                 allow_load=allow_load, progress=progress)

    def search(self, name: str, query: str, *, k: int = 10, mode: str = "hybrid",
               filter: str | None = None, rerank: str | None = None, candidates: int | None = None,
               expand: bool = False, chunks_per_source: int | None = 2) -> list[Hit]:
        """Chunks by meaning, words or both, at most ``chunks_per_source`` of one document (ai.search's
        default; None for all), a document's chunks together."""
        rows = self._query("select key, chunk_seq, chunk, score, similarity, vector_rank, keyword_rank, "
                           "chunk_score, lists "
                           "from ai.search(%s, %s, k => %s, mode => %s, filter => %s, rerank => %s, "
                           "candidates => %s, expand => %s, chunks_per_source => %s)",
                           (name, query, k, mode, filter, rerank, candidates, expand, chunks_per_source))
        return [Hit(*r) for r in rows]

    def search_images(self, name: str, query: str | bytes, *, k: int = 10,
                      filter: str | None = None) -> list[ImageHit]:
        """Pictures by words (a str, any language) or by a picture (its bytes)."""
        from .images.collection import search_images
        with _sql_errors():
            return search_images(self.conn, name, query, k=k, filter=filter)

    def contact_sheet(self, name: str, hits: list[ImageHit], out: str | Path) -> Path:
        """A PNG grid of the hits' pictures, written to ``out``."""
        from .images.collection import contact_sheet
        with _sql_errors():
            return contact_sheet(self.conn, name, hits, out)

    def topic_score(self, name: str, question: str) -> float | None:
        """How surely the question is about the knowledge base's topic (log-odds; None without one)."""
        (row,) = self._query("select ai.topic_score(%s, %s)", (name, question))
        return row[0]

    def ask(self, name: str, question: str, *, k: int | None = None, model: str | None = None,
            threshold: float | None = None, filter: str | None = None, stream: bool = False):
        """The answer with its sources; with ``stream=True`` an iterator of text pieces whose
        ``.result`` (an Answer) is set when it ends."""
        if not stream:
            (row,) = self._query("select ai.rag(%s, %s, %s, %s, %s, %s)", (name, question, k, model, threshold, filter))
            r = row[0]
            return Answer(r["answer"], r["sources"], r["answered"], r.get("usage"), r.get("model"),
                          r.get("confidence"), r.get("draft"), r.get("grounding"), r.get("decline"))
        (row,) = self._query("select ai.rag_prompt(%s, %s, %s, %s, %s, %s)",
                             (name, question, k, model, threshold, filter))
        return AnswerStream(self.settings, row[0], self._role_token(), question)

    def _role_token(self) -> str:
        """This connection's role's own credential for the model server: the answer is written as that
        role, with its grants, and never as more (not the server's token)."""
        (row,) = self._query("select ai_internal._role_token()", None)
        if row[0] is None:
            self._query("select ai_internal._issue_role_tokens()", None)
            (row,) = self._query("select ai_internal._role_token()", None)
        return row[0]

    def evaluate(self, name: str, questions, *, modes: list[str] | None = None, rerank: str | None = None,
                 answers: bool = False, model: str | None = None, calibrate: bool = False) -> dict:
        """Retrieval (and with ``answers`` RAG answers; with ``calibrate`` the RAG thresholds) measured
        on a questions file or a list of evaluation.Question: see pgmind.evaluation.evaluate."""
        from .evaluation import evaluate
        return evaluate(self, name, questions, modes=modes, rerank=rerank, answers=answers, model=model,
                        calibrate=calibrate)

    # -- training -------------------------------------------------------------------------------
    def finetune(self, kb: str, *, base: str = "e5-small", name: str | None = None, pairs: str | None = None,
                 method: str = "lora", epochs: int = 2, questions: int = 64, force: bool = False,
                 progress: Callable[[int, float], None] | None = None) -> TrainingJob:
        """Fine-tune an embedding model on a knowledge base: queue the job (ai.finetune), then run it
        here.  ``pairs``: a SQL query of (question, key) pairs, else the chat model writes questions.
        ``progress(job_id, fraction)`` is called once queued and as the job runs."""
        options = {"method": method, "epochs": epochs, "questions": questions, "force": force}
        return self._train("select ai.finetune(%s, %s, %s, %s, %s)",
                           (kb, base, name, pairs, json.dumps(options)), progress)

    def train_image_encoder(self, source: str, query: str, *, text_model: str = "use-m3", name: str | None = None,
                            epochs: int = 3, translate: bool = True,
                            progress: Callable[[int, float], None] | None = None) -> TrainingJob:
        """Train an image encoder on labelled images (``query``: SQL giving (image bytea, label
        text)), in ``text_model``'s space: queue the job (ai.train_image_encoder), then run it here."""
        return self._train("select ai.train_image_encoder(%s, %s, %s, %s, %s)",
                           (source, query, text_model, name, json.dumps({"epochs": epochs, "translate": translate})),
                           progress)

    def _train(self, query: str, params, progress: Callable[[int, float], None] | None) -> TrainingJob:
        (row,) = self._query(query, params)
        job_id = row[0]
        if progress:
            progress(job_id, 0.0)
        return self.wait_for_training(job_id, progress=progress)

    def wait_for_training(self, job_id: int, *, progress: Callable[[int, float], None] | None = None,
                          poll: float = 2.0) -> TrainingJob:
        """Wait for a training job to end and return its end as its row says: it runs here (as pgmind's
        service role) while no other runner holds it; while one does (a model server's trainer, whose
        heartbeat is fresh), its progress is followed from the row; if that runner dies, the job is
        taken over here and resumes from its checkpoint."""
        from psycopg.rows import dict_row
        from .training.jobs import FINAL, STALE, run_next, worker_id
        while True:
            with _sql_errors(), self.conn.cursor(row_factory=dict_row) as cur:
                job = cur.execute("select *, state = 'queued' or heartbeat_at is null "
                                  "or heartbeat_at < now() - make_interval(secs => %s) as claimable "
                                  "from ai.training_jobs where id = %s", (STALE, job_id)).fetchone()
            if job is None:
                raise PgmindError(f"training job {job_id} does not exist, or is not yours",
                                  hint="see your jobs with select * from ai.training_jobs")
            if job["state"] not in FINAL and job["claimable"]:
                with _sql_errors():
                    ran = run_next(self.settings, self.dsn, job_id,
                                   progress=(lambda f: progress(job_id, f)) if progress else None)
                if ran is not None:
                    job = ran
            if job["state"] in FINAL:
                return TrainingJob(job["id"], job["state"], job["metrics"] or {}, job["error"], job["new_model"],
                                   ran_here=job["worker_id"] == worker_id())
            if progress and not job["claimable"]:
                progress(job_id, float(job["progress"] or 0.0))
            time.sleep(poll)


ANSWER_WAIT = 300.0        # seconds the model server may take to start an answer, or between two pieces


class AnswerStream:
    """Iterates over the answer as the model writes it (from the model server, OpenAI protocol)."""

    def __init__(self, settings: Settings, prompt: dict, token: str, question: str = ""):
        self.settings, self.prompt, self.token, self.question = settings, prompt, token, question
        self.result: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        p = self.prompt
        if not p["answered"]:
            self.result = Answer(p["answer"], [], False, decline=p.get("decline"))
            yield p["answer"]
            return
        body = {"model": p["model"], "messages": p["messages"], "stream": True,
                "stream_options": {"include_usage": True}, **p["options"]}
        parts, usage = [], None
        try:
            with httpx.stream("POST", self.settings.effective_server_url + "/v1/chat/completions", json=body,
                              headers={"Authorization": f"Bearer {self.token}"},
                              timeout=httpx.Timeout(ANSWER_WAIT, connect=5)) as r:
                if r.status_code >= 400:
                    r.read()
                    raise PgmindError(f"the model server answered {r.status_code}: {r.text[:300]}")
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        raise PgmindError(event["error"].get("message", "generation failed"),
                                          hint=event["error"].get("hint"))
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            parts.append(piece)
                            yield piece
        except httpx.TimeoutException:
            # (a timeout is a TransportError too: it is not "cannot reach", and "start pgmind serve"
            # would send the user to start a server that runs)
            raise ModelServerUnavailableError(
                f"the model server at {self.settings.effective_server_url} did not "
                f"{'go on with' if parts else 'start'} the answer within {ANSWER_WAIT:.0f} s",
                hint="it is busy (a training job, other answers, a model loading; see pgmind status and its "
                     "log): try again when it is idle") from None
        except httpx.TransportError:
            raise ModelServerUnavailableError(
                f"cannot reach the model server at {self.settings.effective_server_url}") from None
        draft = "".join(parts)
        # (the pieces were the draft; the result is checked against the sources, as ai.rag's is)
        c = checked_reply(self.question, draft, p)
        self.result = Answer(c.get("answer", draft), p["sources"], True, usage, p["model"], c["confidence"],
                             c.get("draft"), c.get("grounding"))


def connect(dsn: str | None = None) -> Pgmind:
    """A Pgmind, connected at once (an unreachable database fails here, not on first use)."""
    db = Pgmind(dsn)
    db.conn
    return db
