"""The pgmind command line: thin over the library. Each command parses, calls one library function,
and turns library errors into a message and exit code 1."""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .config import Settings, load_settings
from .errors import PgmindError

app = typer.Typer(help="pgmind: PostgreSQL that thinks with its own data.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="The embedded PostgreSQL cluster under .pgmind/.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
vectorizer_app = typer.Typer(help="Vectorizers: tables that keep their own embeddings current.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
app.add_typer(vectorizer_app, name="vectorizer")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj


def fail(e: PgmindError) -> None:
    err_console.print(f"[bold red]error:[/] {e.message}")
    if e.hint:
        err_console.print(f"[yellow]hint:[/] {e.hint}")
    raise typer.Exit(1)


@app.callback()
def main(ctx: typer.Context,
         dsn: Optional[str] = typer.Option(None, "--dsn", help="An existing PostgreSQL server (else PGMIND_DSN, "
                                                                "else the embedded cluster)."),
         home: Optional[str] = typer.Option(None, "--home", help="The pgmind home directory (else PGMIND_HOME, "
                                                                  "else ./.pgmind)."),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")):
    """pgmind: embeddings, LLMs, vectorizers, search and RAG inside PostgreSQL, local by default."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ctx.obj = load_settings(dsn=dsn, home=home)
    except PgmindError as e:
        fail(e)


def _connect(settings: Settings, **kw):
    from .db import connect, resolve_dsn
    return connect(resolve_dsn(settings), **kw)


# -- db -------------------------------------------------------------------------------------
@db_app.command("up")
def db_up(ctx: typer.Context):
    """Create (first time) and start the embedded cluster, with pgvector and plpython3u."""
    from .db import Cluster
    try:
        cluster = Cluster(_settings(ctx))
        first = not cluster.initialized()
        with console.status("starting PostgreSQL…"):
            cluster.start()
    except PgmindError as e:
        fail(e)
    console.print(f"PostgreSQL is {'created and ' if first else ''}running: {cluster.dsn}")


@db_app.command("down")
def db_down(ctx: typer.Context):
    """Stop the embedded cluster (its data stays)."""
    from .db import Cluster
    try:
        Cluster(_settings(ctx)).stop()
    except PgmindError as e:
        fail(e)
    console.print("PostgreSQL stopped")


@db_app.command("status")
def db_status(ctx: typer.Context):
    """Show whether the embedded cluster exists and runs."""
    from .db import Cluster
    st = Cluster(_settings(ctx)).status()
    for k, v in st.items():
        console.print(f"{k:12} {v}")
    raise typer.Exit(0 if st["running"] else 3)


@db_app.command("url")
def db_url(ctx: typer.Context):
    """Print the connection string (PGMIND_DSN if set, else the embedded cluster's)."""
    from .db import resolve_dsn
    from .db.connection import redact
    print(redact(resolve_dsn(_settings(ctx))) if _settings(ctx).dsn else resolve_dsn(_settings(ctx)))


@db_app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def db_psql(ctx: typer.Context):
    """Open psql on the database (extra arguments go to psql)."""
    from .db import Cluster
    settings = _settings(ctx)
    args = (["psql", settings.dsn] if settings.dsn else Cluster(settings).psql_command()) + list(ctx.args)
    os.execvp(args[0], args)


# -- install ---------------------------------------------------------------------------------
def _role_passwords(settings: Settings) -> dict[str, str]:
    from .db.migrate import SERVICE_ROLES
    return {role: settings.role_password(role, create=True) for role in SERVICE_ROLES}


@app.command()
def install(ctx: typer.Context):
    """Create or upgrade the ai schema (safe to re-run), pgmind's service roles, and tell the database
    where the model server listens."""
    from .db import install as do_install
    settings = _settings(ctx)
    try:
        settings.server_token(create=True)      # (the server's own; it is not shared with the database)
        with _connect(settings, register_vector=False) as conn:
            result = do_install(conn, server_url=settings.effective_server_url,
                                role_passwords=_role_passwords(settings))
    except PgmindError as e:
        fail(e)
    if result.applied:
        console.print(f"applied migrations: {', '.join(result.applied)}")
    if result.functions:
        console.print(f"updated functions: {', '.join(result.functions)}")
    if not result.applied and not result.functions:
        console.print("schema ai is up to date")
    if result.skipped:
        console.print(f"[yellow]skipped (no plpython3u): {', '.join(result.skipped)}[/]")


# -- serve -----------------------------------------------------------------------------------
@app.command()
def serve(ctx: typer.Context,
          host: Optional[str] = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
          port: Optional[int] = typer.Option(None, help="Port (default 8765)."),
          show_token: bool = typer.Option(False, "--show-token", help="Print the bearer token and exit."),
          worker: bool = typer.Option(True, "--worker/--no-worker",
                                      help="Also run a vectorizer worker in the server process.")):
    """Run the model server: local models, remote providers, OpenAI and DashScope protocols."""
    settings = _settings(ctx)
    try:
        token = settings.server_token(create=False)
    except PgmindError as e:
        fail(e)
    if show_token:
        print(token)
        return
    # OpenMP threads spin after each model call by default, taking cores from PostgreSQL on the
    # same machine; a short spin keeps most of the speed (set before any model library loads)
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    # and llama.cpp's OpenMP threads spin while they wait: on a busy 2-core machine that cut
    # generation 4x (docs/benchmarks.md); passive waiting gives the cores back
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn
    from .server.app import create_app
    host = host or settings.server_host
    port = port or settings.server_port
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] listening on {host}: other machines can reach the model server "
                          "(it still requires the token)")
    logging.getLogger().setLevel(logging.INFO)
    # database backends keep their connection to the model server open between calls
    uvicorn.run(create_app(settings, token, worker=worker), host=host, port=port, log_level="warning",
                access_log=False, timeout_keep_alive=300)


# -- vectorizer worker -------------------------------------------------------------------------
@app.command()
def worker(ctx: typer.Context,
           vectorizer: Optional[list[str]] = typer.Option(None, "--vectorizer", help="Only these vectorizers "
                                                                                    "(repeatable; default all)."),
           batch: int = typer.Option(32, help="Source rows per batch."),
           lease: float = typer.Option(120.0, help="Seconds a claimed batch stays leased to this worker."),
           once: bool = typer.Option(False, "--once", help="Drain the queues, then exit.")):
    """Run a vectorizer worker (run several, on several machines, to scale out)."""
    import signal
    import threading
    from .db import resolve_dsn
    from .vectorizer.worker import Worker
    settings = _settings(ctx)
    logging.getLogger().setLevel(logging.INFO)
    w = Worker(settings, resolve_dsn(settings), names=vectorizer or None, batch_rows=batch, lease_seconds=lease)
    try:
        if once:
            w.drain(timeout=None)          # a backlog may take hours: no deadline
            console.print(f"done: {w.totals.rows} rows, {w.totals.chunks} chunks, {w.totals.quarantined} quarantined")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        w.run(stop)
    except PgmindError as e:
        fail(e)
    finally:
        w.close()


def _show_rows(rows, keys: tuple[str, ...], as_json: bool, headers: tuple[str, ...] | None = None) -> None:
    """Query rows as JSON objects (keys) or as a table (headers, default the keys)."""
    if as_json:
        print(json.dumps([dict(zip(keys, r)) for r in rows], default=str, ensure_ascii=False, indent=2))
        return
    table = Table(*(headers or keys))
    for r in rows:
        table.add_row(*(str(x) for x in r))
    console.print(table)


@vectorizer_app.command("status")
def vectorizer_status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Pending, leased, done and failed rows of each vectorizer, its lag and throughput."""
    try:
        with _connect(_settings(ctx)) as conn:
            rows = conn.execute("""select name, version, status, model, pending, leased, coalesce(done, 0), errors,
                                          coalesce(extract(epoch from lag)::int, 0), round(rows_per_second, 2),
                                          coalesce(last_error, '')
                                   from ai.vectorizer_status order by name, version""").fetchall()
    except PgmindError as e:
        fail(e)
    _show_rows(rows, ("name", "version", "status", "model", "pending", "leased", "done", "errors", "lag_seconds",
                      "rows_per_second", "last_error"), as_json)


@vectorizer_app.command("backfill")
def vectorizer_backfill(ctx: typer.Context, name: str = typer.Argument(..., help="The vectorizer."),
                        batch: int = typer.Option(32, help="Source rows per batch.")):
    """Queue every row of the source table and embed them here, with a progress bar."""
    settings = _settings(ctx)
    try:
        with _connect(settings, autocommit=True) as conn:
            conn.execute("select ai.vectorizer_backfill(%s)", (name,))
        _embed_pending(settings, name, batch, name)
    except PgmindError as e:
        fail(e)
    except Exception as e:
        _fail_sql(e)


# -- models ----------------------------------------------------------------------------------
@models_app.command("list")
def models_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the registered models (secrets are never shown)."""
    try:
        with _connect(_settings(ctx)) as conn:
            rows = conn.execute("""select model_id, provider, model_type, model_name, coalesce(dimensions::text, ''),
                                          coalesce(url, '(local)'), array_to_string(granted_to, ',')
                                   from ai.models order by model_id""").fetchall()
    except PgmindError as e:
        fail(e)
    _show_rows(rows, ("model_id", "provider", "type", "name", "dimensions", "url", "granted_to"), as_json,
               headers=("model", "provider", "type", "name", "dims", "url", "granted to"))


@models_app.command("show")
def models_show(ctx: typer.Context, model: str = typer.Argument(..., help="The model id.")):
    """Show one model's registration."""
    try:
        with _connect(_settings(ctx)) as conn:
            row = conn.execute("select to_jsonb(m) from ai.models m where model_id = %s", (model,)).fetchone()
    except PgmindError as e:
        fail(e)
    if not row:
        fail(PgmindError(f'model "{model}" is not registered', hint="see `pgmind models list`"))
    print(json.dumps(row[0], ensure_ascii=False, indent=2, default=str))


@models_app.command("add")
def models_add(ctx: typer.Context,
               model: str = typer.Argument(..., help="The model id, e.g. qwen-plus or embedding/my_clip."),
               provider: str = typer.Option(..., help="pgmind, openai, dashscope or other."),
               type: str = typer.Option(..., "--type", help="embedding, chat, image_embedding or rerank."),
               name: str = typer.Option(..., help="The provider's name for the model."),
               url: Optional[str] = typer.Option(None, help="The endpoint (default: the provider's)."),
               key_env: Optional[str] = typer.Option(None, help="Environment variable of the model server "
                                                                "that holds the API key."),
               options: str = typer.Option("{}", help="JSON options, e.g. '{\"dimensions\": 1024}'.")):
    """Register a model (the API key is referenced by environment variable, never typed on the command line)."""
    auth = {"author_type": "env", "env": key_env} if key_env else {}
    try:
        with _connect(_settings(ctx), autocommit=True) as conn:
            conn.execute("select ai.create_model(%s, %s, %s, %s, %s, %s::jsonb, options => %s::jsonb)",
                         (model, url, provider, type, name, json.dumps(auth), options))
    except PgmindError as e:
        fail(e)
    except Exception as e:
        _fail_sql(e)
    console.print(f"registered {model}")


def _fail_sql(e: Exception) -> None:
    import psycopg
    from .db.connection import from_sql_error
    if isinstance(e, psycopg.Error) and e.diag.message_primary:
        fail(from_sql_error(e))
    raise e


@models_app.command("test")
def models_test(ctx: typer.Context, model: str = typer.Argument(..., help="The model id."),
                text: str = typer.Option("PostgreSQL 是一个数据库。PostgreSQL is a database.", help="Input text.")):
    """Call a model once through SQL (the whole path: database, model server, model) and time it."""
    try:
        with _connect(_settings(ctx), autocommit=True) as conn:
            mtype = conn.execute("select model_type from ai.models where model_id = %s", (model,)).fetchone()
            if not mtype:
                fail(PgmindError(f'model "{model}" is not registered', hint="see `pgmind models list`"))
            start = time.perf_counter()
            if mtype[0] == "embedding":
                v = conn.execute("select ai.embed(%s, %s)::real[]", (model, text)).fetchone()[0]
                out = f"{len(v)} dimensions: [{', '.join(f'{x:.4f}' for x in v[:4])}, …]"
            elif mtype[0] == "chat":
                out = conn.execute("select ai.generate(%s, %s, options => '{\"max_tokens\": 64}')",
                                   (model, text)).fetchone()[0]
            else:
                out = json.dumps(conn.execute("select ai.call_model(%s, %s)", (model, text)).fetchone()[0])[:200]
            elapsed = time.perf_counter() - start
    except PgmindError as e:
        fail(e)
    except Exception as e:
        _fail_sql(e)
    console.print(out)
    console.print(f"[dim]{elapsed * 1000:.0f} ms[/]")


# -- knowledge bases: ingest, search, ask --------------------------------------------------------
@app.command()
def ingest(ctx: typer.Context, folder: str = typer.Argument(..., help="A folder of documents: .html, .md, .txt, .pdf, "
                                                                  ".docx, .csv and .xlsx files (text in UTF-8, UTF-16, "
                                                                  "GBK/GB18030 or Big5)."),
           into: str = typer.Option(..., "--into", help="The table (and vectorizer) name, e.g. pg_docs."),
           model: str = typer.Option("e5-small", help="The embedding model of a new vectorizer."),
           embed: bool = typer.Option(True, "--embed/--no-embed", help="Embed the changed files now "
                                                                       "(else a worker does it)."),
           batch: int = typer.Option(16, help="Files per embedding batch."),
           topic: Optional[str] = typer.Option(None, help="What the documents are about, e.g. PostgreSQL: "
                                                          "the chat model expands questions with it."),
           rows: bool = typer.Option(False, "--rows", help="Each row of a .csv, .tsv or .xlsx file is a document "
                                                           "(its header row names the fields); else each file is one.")):
    """Load a folder into a table with a vectorizer; re-running updates changed files and removes deleted ones."""
    from collections import Counter
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from .ingest import ingest as do_ingest
    settings = _settings(ctx)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    try:
        with _connect(settings) as conn, Progress(*columns, console=console) as bar:
            task = bar.add_task("reading files", total=None, rate="")
            result = do_ingest(conn, folder, into, model=model, topic=topic, rows=rows,
                               progress=lambda i, n: bar.update(task, completed=i, total=n))
        textless = sum(why in ("an empty file", "no text in it") for _, why in result.skipped)
        console.print(f"{result.files} files: {result.changed} {'rows' if rows else 'documents'} new or changed, "
                      f"{result.unchanged} unchanged, {result.removed} removed, {len(result.skipped)} skipped "
                      f"({len(result.skipped) - textless} not documents, {textless} without text), "
                      f"{len(result.failed)} unreadable")
        legacy = Counter(e for e in result.encodings.values() if e != "utf-8")
        if legacy:
            console.print("read in other encodings than UTF-8: "
                          + ", ".join(f"{n} in {e}" for e, n in legacy.most_common()), highlight=False)
        for path, why in result.skipped[:20]:
            err_console.print(f"[yellow]skipped {escape(path)}: {escape(why)}[/yellow]", highlight=False)
        if len(result.skipped) > 20:
            err_console.print(f"[yellow]... and {len(result.skipped) - 20} more skipped[/yellow]")
        for path, why in result.failed:
            err_console.print(f"[yellow]unreadable {escape(path)}: {escape(why)}[/yellow]", highlight=False)
        if result.language:
            console.print(f"knowledge base language: {result.language} (questions in the other language "
                          f"are translated before searching)")
        if embed:
            _embed_pending(settings, into, batch, "embedding")
    except PgmindError as e:
        fail(e)
    except Exception as e:
        _fail_sql(e)


@app.command("ingest-images")
def ingest_images(ctx: typer.Context, folder: str = typer.Argument(..., help="A folder of pictures (JPEG, PNG, WebP, GIF, BMP, TIFF)."),
                  into: str = typer.Option(..., "--into", help="The table (and image vectorizer) name, e.g. photos."),
                  model: str = typer.Option("image-features", help="The image model of a new vectorizer."),
                  store_bytes: bool = typer.Option(False, "--bytes", help="Store the files in the table "
                                                                          "(else their paths, loaded when embedded)."),
                  ocr: bool = typer.Option(False, "--ocr", help="Also read the text in the pictures (about 1 s each)."),
                  embed: bool = typer.Option(True, "--embed/--no-embed", help="Embed the new pictures now."),
                  batch: int = typer.Option(16, help="Pictures per embedding batch.")):
    """Load a folder of pictures into a table with an image vectorizer (re-running updates it)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from .images.collection import ingest_images as do_ingest
    settings = _settings(ctx)
    try:
        with _connect(settings) as conn, Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                                  MofNCompleteColumn(), console=console) as bar:
            task = bar.add_task("reading pictures", total=None)
            result = do_ingest(conn, folder, into, model=model, store_bytes=store_bytes, ocr=ocr,
                               progress=lambda i, n: bar.update(task, completed=i, total=n))
        console.print(f"{result.files} pictures: {result.changed} new or changed, {result.unchanged} unchanged, "
                      f"{result.removed} removed, {len(result.failed)} unreadable")
        if result.allowed:
            console.print(f"allowed loading from {result.allowed} (select * from ai.load_allow_list)")
        for path, why in result.failed:
            err_console.print(f"[yellow]skipped {path}: {why}[/yellow]")
        if embed:
            _embed_pending(settings, into, batch, "embedding pictures")
    except PgmindError as e:
        fail(e)
    except Exception as e:
        _fail_sql(e)


@app.command("search-images")
def search_images(ctx: typer.Context,
                  query: str = typer.Argument(..., help="Words (any language), or the path of a picture to find alike."),
                  into: str = typer.Option(..., "--in", help="The image knowledge base (see ingest-images)."),
                  k: int = typer.Option(10, "-k", help="How many results."),
                  filter: Optional[str] = typer.Option(None, help="A SQL condition on the table, e.g. \"width > 500\"."),
                  sheet: Optional[str] = typer.Option(None, "--open", help="Write a contact sheet PNG of the hits here."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Find pictures by words or by a picture; prints paths and scores."""
    from pathlib import Path
    from .images.collection import contact_sheet, search_images as do_search
    settings = _settings(ctx)
    q: str | bytes = Path(query).read_bytes() if Path(query).is_file() else query
    try:
        with _connect(settings) as conn:
            hits = do_search(conn, into, q, k=k, filter=filter)
            if sheet and hits:
                console.print(f"contact sheet: {contact_sheet(conn, into, hits, sheet)}")
    except PgmindError as e:
        fail(e)
    except Exception as e:
        _fail_sql(e)
    if as_json:
        print(json.dumps([h.__dict__ for h in hits], ensure_ascii=False, indent=2))
        return
    for i, h in enumerate(hits, 1):
        sim = f"  similarity {h.similarity:.3f}" if h.similarity is not None else ""
        console.print(f"[bold]{i}. {h.path}[/]  score {h.score:.4f}{sim}", markup=True, highlight=False)
        console.print("   " + " ".join(h.description.split())[:200], markup=False)


def _run_training(settings: Settings, query: str, params) -> dict | None:
    """Queue a training job with one SQL call, then run it here with a progress bar; its final row."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from .db import resolve_dsn
    from .training.jobs import run_next
    try:
        with _connect(settings) as conn:
            job_id = conn.execute(query, params).fetchone()[0]
            conn.commit()
        with Progress(TextColumn("[bold]training job " + str(job_id)), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("train", total=1.0)
            job = run_next(settings, resolve_dsn(settings), job_id, progress=lambda f: bar.update(task, completed=f))
    except PgmindError as e:
        fail(e)
    except Exception as e:
        _fail_sql(e)
    if job is None:   # (a server's trainer claimed it first: it runs there)
        console.print(f"job {job_id} is run by a model server: select * from ai.training_jobs where id = {job_id}")
    return job


@app.command()
def finetune(ctx: typer.Context, kb: str = typer.Argument(..., help="The knowledge base (vectorizer) to learn from."),
             base: str = typer.Option("e5-small", help="The embedding model to start from."),
             name: Optional[str] = typer.Option(None, help="The new model's id (default <base>-<kb>)."),
             pairs: Optional[str] = typer.Option(None, "--pairs", help="A SQL query of (question, key) pairs; "
                                                 "without it the chat model writes questions."),
             method: str = typer.Option("lora", help="lora or full."),
             epochs: int = typer.Option(2, help="Passes over the pairs (the best epoch on held-back pairs is kept)."),
             questions: int = typer.Option(64, help="Without --pairs: how many chunks get a generated question."),
             force: bool = typer.Option(False, help="Register the model even if it is worse on held-back pairs.")):
    """Fine-tune an embedding model on a knowledge base; progress bar, then retrieval before and after."""
    from rich.table import Table
    settings = _settings(ctx)
    options = {"method": method, "epochs": epochs, "questions": questions, "force": force}
    job = _run_training(settings, "select ai.finetune(%s, %s, %s, %s, %s)",
                        (kb, base, name, pairs, json.dumps(options)))
    if job is None:
        return
    metrics = job["metrics"] or {}
    table = Table("held-back pairs", "before", "after")
    for key in ("recall@1", "recall@5", "recall@10", "mrr"):
        b, a = (metrics.get(x, {}).get(key) for x in ("before", "after"))
        table.add_row(key, f"{b:.3f}" if b is not None else "", f"{a:.3f}" if a is not None else "")
    console.print(table)
    console.print(f"pairs: {metrics.get('pairs')}")
    if job["state"] != "done":
        console.print(f"[red]job {job['id']} {job['state']}[/]: {job['error'] or ''}", markup=True)
        raise typer.Exit(1)
    console.print(f"registered [bold]{job['new_model']}[/]: switch with "
                  f"select ai.alter_vectorizer('{kb}', model => '{job['new_model']}')", markup=True)


@app.command("train-images")
def train_images(ctx: typer.Context, source: str = typer.Argument(..., help="A name for what the images are (the job's source)."),
                 query: str = typer.Option(..., "--from", help="A SQL query of (image bytea, label text)."),
                 text_model: str = typer.Option("use-m3", help="The local text model whose space the images join."),
                 name: Optional[str] = typer.Option(None, help="The new image model's id (default <source>-encoder)."),
                 epochs: int = typer.Option(3, help="Passes over the images (the best on held-out images is kept)."),
                 translate: bool = typer.Option(True, help="Have the chat model name each label in the other language.")):
    """Train an image encoder on labelled images, so words (English and Chinese) and pictures find them."""
    settings = _settings(ctx)
    job = _run_training(settings, "select ai.train_image_encoder(%s, %s, %s, %s, %s)",
                        (source, query, text_model, name, json.dumps({"epochs": epochs, "translate": translate})))
    if job is None:
        return
    after = (job["metrics"] or {}).get("after", {})
    for key in ("text_to_image_p10", "image_to_image_p10", "label_accuracy", "held_out"):
        if key in after:
            console.print(f"{key}: {after[key]:.3f}" if isinstance(after[key], float) else f"{key}: {after[key]}")
    if job["state"] != "done":
        console.print(f"[red]job {job['id']} {job['state']}[/]: {job['error'] or ''}", markup=True)
        raise typer.Exit(1)
    console.print(f"registered [bold]{job['new_model']}[/]: an image vectorizer with model => "
                  f"'{job['new_model']}' finds these pictures by words", markup=True)


def _embed_pending(settings: Settings, name: str, batch: int, label: str):
    """Run a worker here until the vectorizer's queue is empty, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from .db import resolve_dsn
    from .vectorizer.worker import Worker
    with _connect(settings) as conn:
        total = conn.execute("select coalesce(sum(pending + leased), 0)::int from ai.vectorizer_status where name = %s",
                             (name,)).fetchone()[0]
    w = Worker(settings, resolve_dsn(settings), names=[name], batch_rows=batch, poll_interval=0.5)
    start = time.monotonic()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(label, total=total, rate="")

        def progress(rows: int) -> None:
            elapsed = max(time.monotonic() - start, 1e-6)
            bar.update(task, advance=rows, rate=f"{w.totals.chunks / elapsed:.1f} chunks/s")
        try:
            w.drain(timeout=None, on_batch=progress)
        finally:
            w.close()
    console.print(f"{w.totals.rows} rows, {w.totals.chunks} chunks, {w.totals.quarantined} quarantined")
    return w


@app.command()
def search(ctx: typer.Context, query: str = typer.Argument(..., help="What to look for."),
           into: str = typer.Option(..., "--in", help="The vectorizer (knowledge base) to search."),
           k: int = typer.Option(5, "-k", help="How many results."),
           mode: str = typer.Option("hybrid", help="vector, keyword or hybrid."),
           filter: Optional[str] = typer.Option(None, help="A SQL condition on the source table, "
                                                           "e.g. \"section = 'sql'\"."),
           expand: bool = typer.Option(False, "--expand", help="Also search the chat model's short answer "
                                                               "(better on vague questions; seconds slower)."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Search a knowledge base by meaning, by words, or both."""
    from .client import Pgmind
    try:
        with Pgmind(settings=_settings(ctx)) as db:
            hits = db.search(into, query, k=k, mode=mode, filter=filter, expand=expand)
    except PgmindError as e:
        fail(e)
    if as_json:
        print(json.dumps([h.__dict__ for h in hits], ensure_ascii=False, indent=2))
        return
    for i, h in enumerate(hits, 1):
        key = ", ".join(f"{v}" for v in h.key.values())
        # (keyword search does not embed the question: no similarity)
        sim = f"  similarity {h.similarity:.3f}" if h.similarity is not None else ""
        console.print(f"[bold]{i}. {key}[/] #{h.chunk_seq}  score {h.score:.4f}{sim}")
        console.print("   " + " ".join(h.chunk.split())[:300], markup=False)


@app.command()
def ask(ctx: typer.Context, question: str = typer.Argument(..., help="The question, in Chinese or English."),
        into: str = typer.Option(..., "--in", help="The vectorizer (knowledge base) to ask."),
        model: Optional[str] = typer.Option(None, help="The chat model (default: the knowledge base's)."),
        k: Optional[int] = typer.Option(None, "-k", help="How many chunks to retrieve.")):
    """Answer a question from a knowledge base, streaming the answer, then its sources."""
    from .client import Pgmind
    try:
        with Pgmind(settings=_settings(ctx)) as db:
            stream = db.ask(into, question, k=k, model=model, stream=True)
            for piece in stream:
                console.print(piece, end="", markup=False, highlight=False)
            console.print()
            for src in stream.result.sources:
                key = ", ".join(str(v) for v in src["key"].values())
                console.print(f"[dim][{src['n']}] {key} #{src['chunk_seq']} (similarity {src['similarity']:.3f})[/]")
    except PgmindError as e:
        fail(e)


@app.command("eval")
def eval_(ctx: typer.Context, name: str = typer.Argument(..., help="The knowledge base (vectorizer)."),
          questions: str = typer.Argument(..., help="A JSONL file: question, lang, gold, facts."),
          mode: Optional[list[str]] = typer.Option(None, "--mode", help="vector, keyword, hybrid, "
                                                                         "hybrid+expand (what RAG searches: the "
                                                                         "chat model's expansion too; slow) "
                                                                         "(repeatable; default all)."),
          rerank: Optional[str] = typer.Option(None, "--rerank", help="A rerank model: also measure "
                                                                      "hybrid+rerank."),
          answers: bool = typer.Option(False, "--answers", help="Also answer every question with RAG and "
                                                                 "check facts, declines, faults and the "
                                                                 "answers' language (slow)."),
          model: Optional[str] = typer.Option(None, help="The chat model for --answers."),
          calibrate: bool = typer.Option(False, "--calibrate", help="Also find the RAG thresholds (topic "
                                                                     "check, then similarity) that best "
                                                                     "separate answerable from unanswerable "
                                                                     "questions."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Measure retrieval (recall@1/5/10, MRR, nDCG@10) and answers on a questions file."""
    from .client import Pgmind
    from .evaluation import MODES, calibrate_threshold, evaluate_answers, evaluate_retrieval, load_questions
    try:
        qs = load_questions(questions)
        modes = mode or list(MODES)
        for m in modes:
            if m not in MODES:
                raise PgmindError(f"unknown mode {m!r}", hint="modes: " + ", ".join(MODES))
        with Pgmind(settings=_settings(ctx)) as db:
            report = {"retrieval": evaluate_retrieval(db, name, qs, modes, rerank)}
            if answers:
                report["answers"] = evaluate_answers(db, name, qs, model)
            if calibrate:
                report["threshold"] = calibrate_threshold(db, name, qs)
    except PgmindError as e:
        fail(e)
    if as_json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return
    table = Table("mode", "lang", "n", "recall@1", "recall@5", "recall@10", "MRR", "nDCG@10")
    rerank_cut = report["retrieval"].pop("rerank_threshold", None)
    for m, per in report["retrieval"].items():
        for lang, sc in per.items():
            table.add_row(m, lang, str(sc["n"]), *(str(sc[k]) for k in ("recall@1", "recall@5", "recall@10",
                                                                         "mrr", "ndcg@10")))
    console.print(table)
    if rerank_cut:
        c = rerank_cut
        console.print(f"best rerank threshold: {c['threshold']} ({c['answerable_declined']} of {c['answerable']} "
                      f"answerable declined, {c['unanswerable_answered']} of {c['unanswerable']} unanswerable "
                      f"answered); use it with ai.configure_rag('{name}', '{{\"rerank\": \"{rerank}\", "
                      f"\"rerank_threshold\": {c['threshold']}}}')")
    if answers:
        t2 = Table("lang", "answers with the facts", "unanswerable declined", "answerable declined",
                   "faulty answers (pasted, echo, bare markers)", "answers in the question's language")
        for lang, sc in report["answers"]["summary"].items():
            t2.add_row(lang, str(sc["facts"]), str(sc["declined"]), str(sc["answerable_declined"]), str(sc["faults"]),
                       str(sc["in_language"]))
        console.print(t2)
    if calibrate:
        c = report["threshold"]
        setting = {"threshold": c["threshold"]}
        if "topic" in c:
            t = c["topic"]
            setting["topic_threshold"] = t["threshold"]
            console.print(f"best topic threshold: {t['threshold']} ({t['answerable_declined']} of {t['answerable']} "
                          f"answerable questions declined, {t['unanswerable_answered']} of {t['unanswerable']} "
                          f"unanswerable answered)")
        tot = c["total"]
        console.print(f"best RAG threshold: {c['threshold']} ({tot['answerable_declined']} of {tot['answerable']} "
                      f"answerable questions declined, {tot['unanswerable_answered']} of {tot['unanswerable']} "
                      f"unanswerable answered in all); set it with ai.configure_rag('{name}', "
                      f"'{json.dumps(setting)}')")


# -- status ----------------------------------------------------------------------------------
@app.command()
def status(ctx: typer.Context):
    """Is everything up? The database, the ai schema, the model server."""
    import httpx
    from .db import installed_version
    settings = _settings(ctx)
    ok = True
    try:
        with _connect(settings) as conn:
            version = installed_version(conn)
            console.print(f"database      ok ({len(version)} migrations applied)" if version
                          else "database      ok, [yellow]ai schema not installed: run `pgmind install`[/]")
            ok &= bool(version)
    except PgmindError as e:
        console.print(f"database      [red]{e.message}[/]")
        ok = False
    try:
        r = httpx.get(settings.effective_server_url + "/health", timeout=3)
        console.print(f"model server  {'ok' if r.status_code == 200 else r.status_code} at {settings.effective_server_url}")
        ok &= r.status_code == 200
    except httpx.HTTPError:
        console.print(f"model server  [red]not reachable at {settings.effective_server_url}[/] (start it with `pgmind serve`)")
        ok = False
    raise typer.Exit(0 if ok else 1)


if __name__ == "__main__":
    sys.exit(app())
