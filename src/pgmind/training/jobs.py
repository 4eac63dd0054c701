"""Runs the jobs of ai.training_jobs: claims one (a queued job, or a running one whose worker went
silent: it resumes from its checkpoint), resolves its pairs to the knowledge base's chunks (or has
the chat model write questions), trains, measures before and after on held-back pairs, and
registers the model, owned by the job's owner, unless it is worse (options.force overrides).
Progress, the loss curve and errors go to the job's row; ai.cancel_training stops it.

A job is run once: from the claim on, a heartbeat thread (its own connection) marks the row alive
every HEARTBEAT seconds, whatever the runner is doing (reading pairs, embedding the pool, a long
training step), so no other runner takes it over while this one lives.  Every write of the runner
names its worker: a runner that finds the job is no longer its own (taken over after a pause longer
than STALE) stops, and writes neither weights, nor a registration, nor an end state."""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..config import Settings
from ..errors import InvalidRequestError, PgmindError
from . import embedder, paths

log = logging.getLogger(__name__)

STALE = 60.0          # seconds: a running job whose heartbeat is older is taken over (its worker died)
HEARTBEAT = 10.0      # seconds between a running job's heartbeats (well under STALE)
FINAL = ("done", "failed", "cancelled")
MIN_PAIRS = 8
BETTER_THAN_GUESSING = 0.25   # an image encoder must close this share of the gap from a guess to perfect

CLAIM = """
update ai.training_jobs set state = 'running', worker_id = %(worker)s, heartbeat_at = now(),
       started_at = coalesce(started_at, now()), error = null
where id = (select id from ai.training_jobs
            where not cancel_requested and (%(job)s::bigint is null or id = %(job)s)
              and (state = 'queued' or (state = 'running' and heartbeat_at < now() - make_interval(secs => %(stale)s)))
            order by id limit 1 for update skip locked)
returning *"""


def worker_id() -> str:
    """This process's name in ai.training_jobs.worker_id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(conn, job_id: int | None = None, worker: str | None = None) -> dict | None:
    # (a job cancelled while its runner was dying is not taken over: it ends here, as cancelled)
    conn.execute("""update ai.training_jobs set state = 'cancelled', finished_at = now()
                    where state = 'running' and cancel_requested
                      and heartbeat_at < now() - make_interval(secs => %s)""", (STALE,))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(CLAIM, {"worker": worker or worker_id(), "job": job_id, "stale": STALE}).fetchone()


def run_next(settings: Settings, dsn: str, job_id: int | None = None, progress=None) -> dict | None:
    """Claims and runs one job; returns its row at the end (None if there was nothing to run).  The
    row's state is done, failed or cancelled, unless another runner took the job over (then it is
    that runner's, still running: see ``worker_id``).  Whatever ``dsn`` names, the runner connects as
    pgmind's service role (db.service_dsn), never as its user."""
    from ..db.connection import service_dsn
    runner_dsn = service_dsn(settings, dsn)
    with psycopg.connect(runner_dsn, autocommit=True, application_name="pgmind training runner") as conn:
        job = claim(conn, job_id)
        if job is None:
            return None
        me = job["worker_id"]
        heartbeat = _Heartbeat(runner_dsn, job["id"], me)
        heartbeat.start()
        try:
            Runner(settings, conn, job, progress, heartbeat.lost).run()
        except _Lost:
            log.warning("training job %s was taken over by another runner: this one stops", job["id"])
        except _Cancelled:
            _end(conn, job["id"], me, "cancelled", None)
        except Exception as e:      # the job is marked failed with its error; nothing else is lost
            message = e.message if isinstance(e, PgmindError) else f"{type(e).__name__}: {e}"
            _end(conn, job["id"], me, "failed", message[:2000])
        finally:
            heartbeat.stop()
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute("select * from ai.training_jobs where id = %s", (job["id"],)).fetchone()


def _end(conn, job_id: int, me: str, state: str, error: str | None) -> None:
    """The job's end state, written only while the job is still this runner's."""
    conn.execute("""update ai.training_jobs set state = %s, error = coalesce(%s, error), finished_at = now()
                    where id = %s and worker_id = %s and state = 'running'""", (state, error, job_id, me))


class _Heartbeat:
    """Marks a claimed job alive every HEARTBEAT seconds, on a connection of its own, from the claim
    until the runner ends (or dies, which is what a stale heartbeat means).  ``lost`` is set when the
    row is no longer this runner's."""

    def __init__(self, dsn: str, job_id: int, me: str):
        self.dsn, self.job_id, self.me = dsn, job_id, me
        self.lost, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"training-heartbeat-{job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True, application_name="pgmind training heartbeat") as conn:
                while not self._stop.wait(HEARTBEAT):
                    beat = conn.execute("""update ai.training_jobs set heartbeat_at = now()
                                           where id = %s and worker_id = %s and state = 'running'""",
                                        (self.job_id, self.me))
                    if beat.rowcount == 0:
                        self.lost.set()
                        return
        except psycopg.Error:       # (the runner's own connection meets the same trouble and says so)
            log.exception("training job %s: the heartbeat stopped", self.job_id)


class _Cancelled(Exception):
    pass


class _Lost(Exception):
    """The job is no longer this runner's (another one took it over)."""


class Runner:
    def __init__(self, settings: Settings, conn, job: dict, progress=None, lost: threading.Event | None = None):
        self.settings, self.conn, self.job, self.progress = settings, conn, job, progress
        self.me, self.lost = job.get("worker_id"), lost or threading.Event()     # (the claim set it)
        self.options = job["options"] or {}
        self.dir = paths.trained_model_dir(settings, conn, "finetuned", job["new_model"])   # (never the name as a path)
        self.losses: list = list(job["loss"] or [])

    # -- the knowledge base --------------------------------------------------------------------
    def _vectorizer(self) -> dict:
        with self.conn.cursor(row_factory=dict_row) as cur:
            # the active version's chunk table, not the owner's view (which the owner can replace with
            # anything): the runner reads only a plain table pgmind made, granted to its service role
            v = cur.execute("""select v.id, v.dest_schema, ver.store_table, v.key_columns
                               from ai.vectorizers v
                               join ai.vectorizer_versions ver on ver.vectorizer_id = v.id and ver.status = 'active'
                               where v.name = %s""", (self.job["source"],)).fetchone()
        if v is None:
            raise InvalidRequestError(f'vectorizer "{self.job["source"]}" no longer exists')
        return v

    def _read_chunks(self, v: dict, query: sql.Composable, params) -> list[tuple]:
        """Reads the chunk table, locked first and then checked to be still the plain table pgmind made
        (no row security, rules or column types of the owner's, whose code would run here as the
        service role): the lock keeps the owner from changing it until the read is done."""
        table = sql.Identifier(v["dest_schema"], v["store_table"])
        with self.conn.transaction():
            self.conn.execute(sql.SQL("lock table {} in access share mode").format(table))
            plain = self.conn.execute("select ai_internal._store_is_plain(%s::regclass)",
                                      (table.as_string(self.conn),)).fetchone()[0]
            if not plain:
                raise InvalidRequestError(f'the chunk table of vectorizer "{self.job["source"]}" is not the plain '
                                          f'table pgmind made', hint="remove row security, rules or column types of "
                                                                     "your own from it, or re-create the vectorizer")
            return self.conn.execute(query, params).fetchall()

    def _chunks(self, v: dict, limit: int, seed: int) -> list[tuple[str, str]]:
        """(chunk, key as JSON text) of a sample of the knowledge base's chunks."""
        keys = sql.SQL(", ").join(sql.Identifier(c) for c in v["key_columns"])
        q = sql.SQL("select chunk, jsonb_build_array({keys})::text from {s}.{t} order by md5(chunk || %s) limit %s") \
            .format(keys=keys, s=sql.Identifier(v["dest_schema"]), t=sql.Identifier(v["store_table"]))
        return [(c, k) for c, k in self._read_chunks(v, q, (str(seed), limit))]

    def _row_chunks(self, v: dict, key) -> tuple[str, list[str]]:
        """The chunks of the row a pair names (its key: one value, or an object of the key columns)."""
        cols = v["key_columns"]
        if isinstance(key, dict):
            values = [key.get(c) for c in cols]
        elif isinstance(key, list) and len(key) == len(cols):
            values = key
        else:
            values = [key] if len(cols) == 1 else [None]
        if any(x is None for x in values):
            return "", []
        where = sql.SQL(" and ").join(sql.SQL("{}::text = %s").format(sql.Identifier(c)) for c in cols)
        q = sql.SQL("select chunk from {s}.{t} where {w} order by chunk_seq limit 40").format(
            s=sql.Identifier(v["dest_schema"]), t=sql.Identifier(v["store_table"]), w=where)
        rows = self._read_chunks(v, q, [json.dumps(x) if isinstance(x, (dict, list)) else str(x) for x in values])
        return json.dumps(values), [r[0] for r in rows]

    # -- pairs -----------------------------------------------------------------------------------
    def _given_pairs(self, engine, v: dict) -> tuple[list[embedder.Pair], dict]:
        rows = self.conn.execute("select seq, question, key from ai.training_pairs where job_id = %s order by seq",
                                 (self.job["id"],)).fetchall()
        pairs, seen, unknown, duplicates = [], set(), 0, 0
        for n, (seq, question, key) in enumerate(rows):
            if n % 10 == 0:
                self._check_cancel()
                self._progress(0.3 * n / len(rows))
            if not (question or "").strip():
                unknown += 1
                continue
            key_text, chunks = self._row_chunks(v, key)
            if not chunks:
                unknown += 1
                continue
            if (question.strip(), key_text) in seen:
                duplicates += 1
                continue
            seen.add((question.strip(), key_text))
            # the row's chunk that answers: the one the base model puts nearest the question
            import torch
            with torch.inference_mode():
                qv = engine.forward(engine._encoder, [question], True)
                cv = engine.forward(engine._encoder, chunks, False)
            best = chunks[int((cv @ qv.T).argmax())]
            self.conn.execute("update ai.training_pairs set passage = %s where job_id = %s and seq = %s",
                              (best, self.job["id"], seq))
            pairs.append(embedder.Pair(question, best, key_text))
        stats = {"given": len(rows), "unknown_keys": unknown, "duplicates": duplicates, "used": len(pairs)}
        if len(pairs) < MIN_PAIRS:
            raise InvalidRequestError(f"{len(pairs)} usable pairs of {len(rows)} ({unknown} name no row of "
                                      f"{self.job['source']}, {duplicates} duplicates); training needs {MIN_PAIRS}",
                                      hint="check the keys: they are the source table's key values")
        return pairs, stats

    def _generated_pairs(self, v: dict) -> tuple[list[embedder.Pair], dict]:
        """Questions the chat model writes for a sample of chunks, half in Chinese, half in English."""
        n = int(self.options.get("questions", 64))
        model = self.options.get("question_model", "qwen-1.5b")
        chunks = self._chunks(v, n, self.job["id"])
        pairs = []
        for i, (chunk, key) in enumerate(chunks):
            self._check_cancel()
            lang = "Chinese (简体中文)" if i % 2 else "English"
            prompt = (f"Passage:\n{chunk[:1500]}\n\nWrite one short question in {lang} that a user of this "
                      "documentation would ask and that this passage answers. Write only the question.")
            answer = self._server("/v1/chat/completions", {
                "model": model, "temperature": 0.3, "max_tokens": 60, "seed": i,
                "messages": [{"role": "user", "content": prompt}]}, "the chat model could not write questions")
            question = answer["choices"][0]["message"]["content"].strip().strip('"').split("\n")[0]
            if len(question) >= 4:
                pairs.append(embedder.Pair(question, chunk, key))
            self._progress(0.3 * (i + 1) / len(chunks))
        with self.conn.transaction():
            self.conn.execute("delete from ai.training_pairs where job_id = %s", (self.job["id"],))
            for seq, p in enumerate(pairs, 1):
                self.conn.execute("""insert into ai.training_pairs (job_id, seq, question, key, passage, origin)
                                     values (%s, %s, %s, %s, %s, 'generated')""",
                                  (self.job["id"], seq, p.question, p.key, p.passage))
        if len(pairs) < MIN_PAIRS:
            raise PgmindError(f"the chat model wrote {len(pairs)} usable questions; training needs {MIN_PAIRS}",
                              hint='ask for more with options {"questions": 200}')
        return pairs, {"generated": len(pairs), "chunks": len(chunks), "question_model": model}

    # -- the job ---------------------------------------------------------------------------------
    def _server(self, path: str, body: dict, what: str) -> dict:
        """A call to the model server as the job's owner (its grants apply)."""
        import httpx
        r = httpx.post(self.settings.effective_server_url + path, timeout=300, json=body,
                       headers={"Authorization": f"Bearer {self.settings.server_token()}",
                                "X-Pgmind-Caller": self.job["owner"]})
        if r.status_code != 200:
            raise PgmindError(f"{what}: {r.text[:300]}")
        return r.json()

    def _step_callback(self, start: float, span: float, every: int):
        """Records the loss of each training step; every few steps checks for a cancel and reports progress."""
        def on_step(step, total, loss):
            if self.lost.is_set():
                raise _Lost()
            self.losses.append([step, round(loss, 5)])
            if step % every == 0 or step == total:
                self._check_cancel()
                self._progress(start + span * step / total, step)
            return True
        return on_step

    def _check_cancel(self) -> None:
        row = self.conn.execute("select cancel_requested, worker_id, state from ai.training_jobs where id = %s",
                                (self.job["id"],)).fetchone()
        if row is None or row[1:] != (self.me, "running") or self.lost.is_set():
            raise _Lost()
        if row[0]:
            raise _Cancelled()

    def _update(self, query: str, params: tuple) -> None:
        """An update of the job's row (``query`` ends in "where id = %s"), made only while the job is
        this runner's: otherwise the runner stops."""
        if self.lost.is_set() or self.conn.execute(query + " and worker_id = %s and state = 'running'",
                                                   (*params, self.job["id"], self.me)).rowcount == 0:
            raise _Lost()

    def _progress(self, fraction: float, step: int | None = None) -> None:
        self._update("""update ai.training_jobs set progress = %s, heartbeat_at = now(),
                            step = coalesce(%s, step), loss = %s where id = %s""",
                     (min(1.0, fraction), step, json.dumps(self.losses)))
        if self.progress:
            self.progress(fraction)

    def run(self) -> None:
        if self.job["kind"] == "image_encoder":
            return self.run_images()
        from ..models.spec import SPEC_QUERY, spec_from_row
        options = embedder.TrainOptions.from_json(self.options)
        row = self.conn.execute(SPEC_QUERY, (self.job["base_model"],)).fetchone()
        if row is None:
            raise InvalidRequestError(f'model "{self.job["base_model"]}" is not registered')
        base = spec_from_row(row)
        engine = embedder.trainable_engine(base)           # refuses what cannot be trained, first
        v = self._vectorizer()
        has_given = self.conn.execute("select count(*) from ai.training_pairs where job_id = %s and origin = 'given'",
                                      (self.job["id"],)).fetchone()[0]
        pairs, stats = self._given_pairs(engine, v) if has_given else self._generated_pairs(v)
        # held back: the eval split (never trained on), and a pool of other chunks to rank against
        rng = random.Random(options.seed)
        keys = sorted({p.key for p in pairs})
        rng.shuffle(keys)
        eval_keys = set(keys[:max(1, int(len(keys) * float(self.options.get("eval_fraction", 0.2))))])
        train_pairs = [p for p in pairs if p.key not in eval_keys]
        eval_pairs = [p for p in pairs if p.key in eval_keys]
        self.conn.execute("""update ai.training_pairs set split = case when passage is null then split
                             when key::text = any(%s) or jsonb_build_array(key)::text = any(%s) then 'eval' else 'train' end
                             where job_id = %s""", (list(eval_keys), list(eval_keys), self.job["id"]))
        pool = [(p.passage, p.key) for p in pairs]
        pool += [c for c in self._chunks(v, int(self.options.get("eval_pool", 300)), 0)
                 if c[1] not in {p.key for p in pairs}]
        base_pool = embedder.embed_all(engine, engine._encoder, [p for p, _ in pool], False)
        hard = embedder.mine(engine, pairs, pool, base_pool)
        for p, h in zip(pairs, hard):
            if h:
                self.conn.execute("""update ai.training_pairs set hard = true where job_id = %s and question = %s
                                     and passage = %s""", (self.job["id"], p.question, p.passage))
        stats["hard"] = sum(hard)
        before = embedder.rank_metrics(engine, engine._encoder, eval_pairs, pool, base_pool)
        self._set_metrics({"pairs": {**stats, "train": len(train_pairs), "eval": len(eval_pairs),
                                     "pool": len(pool)}, "before": before})
        self.dir.mkdir(parents=True, exist_ok=True)
        checkpoint = self.dir / f"checkpoint-{self.job['id']}.pt"
        self._update("update ai.training_jobs set checkpoint = %s where id = %s", (str(checkpoint),))
        start = time.perf_counter()

        encoder, after = embedder.train(engine, train_pairs, eval_pairs, pool, options, checkpoint,
                                        self._step_callback(0.3, 0.65, 5))
        seconds = time.perf_counter() - start
        metrics = {"pairs": {**stats, "train": len(train_pairs), "eval": len(eval_pairs), "pool": len(pool)},
                   "before": before, "after": after, "train_seconds": round(seconds, 1),
                   "pairs_per_second": round(len(train_pairs) * options.epochs / max(seconds, 1e-9), 2)}
        self._set_metrics(metrics)
        if after.get("mrr", 0) < before.get("mrr", 0) and not self.options.get("force"):
            raise PgmindError(f"the fine-tuned model is worse on held-back pairs (MRR {after.get('mrr', 0):.3f} < "
                              f"{before.get('mrr', 0):.3f}): not registered",
                              hint='more or better pairs, fewer epochs; options {"force": true} registers it anyway')
        import torch
        weights = self.dir / "encoder.pt"
        options = {**base.options, "weights": str(weights), "finetuned_from": base.model_id,
                   "training_job": self.job["id"]}
        options.pop("alias_of", None)
        # RAG's threshold is a similarity on the base's scale: carried to the new one, not inherited
        # (issue 38: a knowledge base switched to the fine-tuned model declined or answered otherwise)
        if options.pop("rag_threshold", None) is not None and eval_pairs:
            options["rag_threshold"] = round(embedder.carried_threshold(
                engine, encoder, [p.question for p in eval_pairs], [p for p, _ in pool], base_pool,
                float(base.options["rag_threshold"])), 3)
            metrics["rag_threshold"] = {"base": base.options["rag_threshold"], "fine_tuned": options["rag_threshold"]}
            self._set_metrics(metrics)
        with self._finishing():
            torch.save(encoder.state_dict(), weights)
            self._register("embedding", base.model_name, options, base.dimensions)
        checkpoint.unlink(missing_ok=True)

    def _set_metrics(self, metrics: dict) -> None:
        self._update("update ai.training_jobs set metrics = %s where id = %s", (json.dumps(metrics),))

    def _register(self, model_type: str, name: str, options: dict, dimensions: int | None) -> None:
        """Registers the trained model for the job's owner.  (Not through ai.create_model, which acts for
        the session's role: the runner's service role acts for no one, and may not write the registry.)"""
        self.conn.execute("select ai_internal._register_trained_model(%s, %s, %s, %s, %s)",
                          (self.job["id"], model_type, name, json.dumps(options), dimensions))

    @contextmanager
    def _finishing(self):
        """The job's end, in one transaction that holds its row: what is saved and registered in the
        block, and the state done, happen only if the job is still this runner's (a runner that lost
        it writes no weights over the other's and registers nothing)."""
        with self.conn.transaction():
            row = self.conn.execute("select worker_id, state from ai.training_jobs where id = %s for update",
                                    (self.job["id"],)).fetchone()
            if row is None or tuple(row) != (self.me, "running") or self.lost.is_set():
                raise _Lost()
            yield
            self.conn.execute("""update ai.training_jobs set state = 'done', progress = 1, finished_at = now(),
                                 loss = %s where id = %s""", (json.dumps(self.losses), self.job["id"]))
        if self.progress:
            self.progress(1.0)

    # -- image encoders ----------------------------------------------------------------------------
    def _embed_texts(self, model: str, texts: list[str]):
        import numpy as np
        data = self._server("/v1/embeddings", {"model": model, "input": texts, "encoding_format": "float"},
                            f"the text model {model} could not embed the labels")
        return np.asarray([d["embedding"] for d in data["data"]], dtype=np.float32)

    def _translations(self, labels: list[str]) -> dict[str, list[str]]:
        """The labels' names in Chinese (or English), by the chat model: words in either language find them."""
        out = {}
        for label in labels:
            try:
                answer = self._server("/v1/chat/completions", {
                    "model": self.options.get("question_model", "qwen-1.5b"), "temperature": 0, "max_tokens": 20,
                    "messages": [{"role": "user", "content":
                                  f"Translate this product category name into Chinese (if it is English) or "
                                  f"English (if it is Chinese). Write only the translation.\n\n{label}"}]},
                    "no translation")
            except PgmindError:          # a label without a translation still trains on its own name
                continue
            text = answer["choices"][0]["message"]["content"].strip().split("\n")[0].strip(' "。.')
            if text and text.lower() != label.lower():
                out[label] = [text]
        return out

    def run_images(self) -> None:
        import numpy as np
        from ..images.codec import open_image
        from ..models.spec import SPEC_QUERY, spec_from_row
        from . import images as trainer
        row = self.conn.execute(SPEC_QUERY, (self.job["base_model"],)).fetchone()
        if row is None:
            raise InvalidRequestError(f'text model "{self.job["base_model"]}" is not registered')
        text_spec = spec_from_row(row)
        if text_spec.provider != "pgmind" or text_spec.model_type != "embedding":
            raise InvalidRequestError(f"text model {text_spec.model_id} must be a local embedding model",
                                      hint="the encoder serves its text side in-process: use e.g. use-m3")
        # the images were copied when the job was made, by its owner's query in its owner's session
        # (ai.train_image_encoder): no query of the owner's runs here
        rows = self.conn.execute("select image, label from ai.training_images where job_id = %s order by seq",
                                 (self.job["id"],)).fetchall()
        images, labels = [], []
        for i, (img, label) in enumerate(rows):
            if img is None or not (label or "").strip():
                continue
            images.append(open_image(bytes(img), f"image {i + 1}"))
            labels.append(label.strip())
            if i % 500 == 0:
                self._check_cancel()
                self._progress(0.1 * i / max(len(rows), 1))
        trainer.check_labels(labels)
        names = sorted(set(labels))
        captions = {n: [] for n in names}
        for label, extra in (self.options.get("captions") or {}).items():
            if label in captions and isinstance(extra, list):
                captions[label] += [str(x) for x in extra]
        if self.options.get("translate", True):
            for label, extra in self._translations(names).items():
                captions[label] += extra
        targets = {}
        for n in names:
            v = self._embed_texts(self.job["base_model"], [n] + captions[n])
            m = v.mean(0)
            targets[n] = m / np.linalg.norm(m)
        self._progress(0.15)

        start = time.perf_counter()
        net, metrics = trainer.train(images, labels, targets, self.options, self._step_callback(0.15, 0.8, 10))
        metrics.update(train_seconds=round(time.perf_counter() - start, 1), images=len(images),
                       captions=captions)
        self._set_metrics({"after": metrics, "pairs": {"images": len(images), "labels": len(names)}})
        # registered only if it labels held-out images clearly better than always guessing the commonest
        # label: it must close a quarter of the gap from that guess to every image right
        guess, accuracy = metrics["guess_accuracy"], metrics["label_accuracy"]
        if accuracy < guess + BETTER_THAN_GUESSING * (1 - guess) and not self.options.get("force"):
            raise PgmindError(f"the encoder labels held-out images no better than guessing ({accuracy:.0%} right; "
                              f"always guessing the commonest label gets {guess:.0%}): not registered",
                              hint='give more images per label (hundreds train well) or more epochs, e.g. options '
                                   '{"epochs": 10}; options {"force": true} registers it anyway')
        directory = paths.trained_model_dir(self.settings, self.conn, "trained", self.job["new_model"])
        with self._finishing():
            self._save_images_encoder(trainer, net, directory, targets, names, captions, text_spec)

    def _save_images_encoder(self, trainer, net, directory, targets, names, captions, text_spec) -> None:
        trainer.save(net, directory, {
            "dimensions": int(next(iter(targets.values())).shape[0]),
            "image_size": int(self.options.get("image_size", 28)), "channels": int(self.options.get("channels", 1)),
            "labels": names, "targets": [targets[n].tolist() for n in names], "captions": captions,
            "text_model": {"model_id": text_spec.model_id, "model_name": text_spec.model_name,
                           "options": text_spec.options}})
        self._register("image_embedding", self.job["new_model"],
                       {"backend": "trained", "path": str(directory), "text_model": text_spec.model_id,
                        "training_job": self.job["id"]}, int(next(iter(targets.values())).shape[0]))
