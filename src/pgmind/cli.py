"""The pgmind command line: thin over the library (pgmind.client.Pgmind).  Each command parses, makes
one library call and prints; library errors become a message and exit code 1 in one place
(``command``)."""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, List, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text
from rich.table import Table

from .config import Settings, load_settings
from .errors import PgmindError
from .rag.grounding import label, why_declined

if TYPE_CHECKING:
    from .client import Pgmind

class _Cli(typer.Typer):
    """The entry point: ``--ray`` given alone (last, or before another option) means ``--ray auto``
    (click's optional option values do not reach typer's options)."""

    def __call__(self, *args, **kwargs):
        if not args and "args" not in kwargs:
            sys.argv[1:] = _ray_alone_is_auto(sys.argv[1:])
        return super().__call__(*args, **kwargs)


def _ray_alone_is_auto(argv: list[str]) -> list[str]:
    out: list[str] = []
    for i, a in enumerate(argv):
        out.append(a)
        if a == "--ray" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append("auto")
    return out


app = _Cli(help="pgmind: PostgreSQL that thinks with its own data.", no_args_is_help=True,
           pretty_exceptions_enable=False)
db_app = typer.Typer(help="The embedded PostgreSQL cluster under .pgmind/.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
vectorizer_app = typer.Typer(help="Vectorizers: tables that keep their own embeddings current.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
app.add_typer(vectorizer_app, name="vectorizer")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fail(e: PgmindError) -> None:
    err_console.print(f"[bold red]error:[/] {e.message}")
    if e.hint:
        err_console.print(f"[yellow]hint:[/] {e.hint}")
    raise typer.Exit(1)


def errors_to_exit(f):
    """The one place where library errors become the CLI's: the message, its hint, exit code 1."""
    @functools.wraps(f)
    def run(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except PgmindError as e:
            fail(e)
    return run


def command(group: typer.Typer, name: str | None = None, **kw):
    """Registers a command on ``group`` with its library errors turned into exit code 1."""
    return lambda f: group.command(name, **kw)(errors_to_exit(f))


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj


def _library(ctx: typer.Context) -> Pgmind:
    from .client import Pgmind
    return Pgmind(settings=_settings(ctx))


@app.callback()
@errors_to_exit
def main(ctx: typer.Context,
         dsn: Optional[str] = typer.Option(None, "--dsn", help="An existing PostgreSQL server (else PGMIND_DSN, "
                                                                "else the embedded cluster)."),
         home: Optional[str] = typer.Option(None, "--home", help="The pgmind home directory (else PGMIND_HOME, "
                                                                  "else ./.pgmind)."),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")):
    """pgmind: embeddings, LLMs, vectorizers, search and RAG inside PostgreSQL, local by default."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = load_settings(dsn=dsn, home=home)


# -- db -------------------------------------------------------------------------------------
@command(db_app, "up")
def db_up(ctx: typer.Context):
    """Create (first time) and start the embedded cluster, with pgvector and plpython3u."""
    from .db import Cluster
    cluster = Cluster(_settings(ctx))
    first = not cluster.initialized()
    with console.status("starting PostgreSQL…"):
        cluster.start()
    console.print(f"PostgreSQL is {'created and ' if first else ''}running: {cluster.dsn}")


@command(db_app, "down")
def db_down(ctx: typer.Context):
    """Stop the embedded cluster (its data stays)."""
    from .db import Cluster
    Cluster(_settings(ctx)).stop()
    console.print("PostgreSQL stopped")


@command(db_app, "status")
def db_status(ctx: typer.Context):
    """Show whether the embedded cluster exists and runs."""
    from .db import Cluster
    st = Cluster(_settings(ctx)).status()
    for k, v in st.items():
        console.print(f"{k:12} {v}")
    raise typer.Exit(0 if st["running"] else 3)


@command(db_app, "url")
def db_url(ctx: typer.Context):
    """Print the database's postgresql:// URL (PGMIND_DSN's, its password hidden, else the embedded cluster's)."""
    from .db import resolve_dsn
    from .db.connection import dsn_url
    print(dsn_url(resolve_dsn(_settings(ctx)), hide_password=bool(_settings(ctx).dsn)))


@command(db_app, "psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def db_psql(ctx: typer.Context):
    """Open psql on the database (extra arguments go to psql)."""
    from .db import Cluster
    settings = _settings(ctx)
    args = (["psql", settings.dsn] if settings.dsn else Cluster(settings).psql_command()) + list(ctx.args)
    os.execvp(args[0], args)


# -- install ---------------------------------------------------------------------------------
@command(app)
def install(ctx: typer.Context):
    """Create or upgrade the ai schema (safe to re-run), pgmind's service roles, and tell the database
    where the model server listens."""
    with _library(ctx) as db:
        result = db.install()
    if result.applied:
        console.print(f"applied migrations: {', '.join(result.applied)}")
    if result.functions:
        console.print(f"updated functions: {', '.join(result.functions)}")
    if not result.applied and not result.functions:
        console.print("schema ai is up to date")
    if result.skipped:
        console.print(f"[yellow]skipped (no plpython3u): {', '.join(result.skipped)}[/]")


# -- serve -----------------------------------------------------------------------------------
@command(app)
def serve(ctx: typer.Context,
          host: Optional[str] = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
          port: Optional[int] = typer.Option(None, help="Port (default 8765)."),
          show_token: bool = typer.Option(False, "--show-token", help="Print the bearer token and exit."),
          worker: bool = typer.Option(True, "--worker/--no-worker",
                                      help="Also run a vectorizer worker in the server process.")):
    """Run the model server: local models, remote providers, OpenAI and DashScope protocols."""
    settings = _settings(ctx)
    token = settings.server_token(create=False)
    if show_token:
        print(token)
        return
    _run_server(settings, token, host or settings.server_host, port or settings.server_port, worker)


def _passive_openmp() -> None:
    """For every command that runs models in this process (serve, worker, ingest, backfill): set
    before torch or llama.cpp loads, which read it once.  OpenMP threads spin after each model call
    by default, taking cores from PostgreSQL on the same machine (and from the worker's own COPY and
    chunking between batches); a short spin keeps most of the speed.  llama.cpp's threads spin while
    they wait: on a busy 2-core machine that cut generation 4x (docs/benchmarks.md); passive waiting
    gives the cores back.  A value the user set wins."""
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _run_server(settings: Settings, token: str, host: str, port: int, worker: bool) -> None:
    _passive_openmp()
    import uvicorn
    from .server.app import create_app
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] listening on {host}: other machines can reach the model server "
                          "(it still requires the token)")
    logging.getLogger().setLevel(logging.INFO)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started:        # (the database pools are open and the port is bound: requests are served)
                url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
                print(f"pgmind serve is ready at {url} (OpenAI-compatible at {url}/v1; vectorizer worker and trainer "
                      f"{'on' if worker else 'off'}; local models load on first use; Ctrl-C stops it)", flush=True)
    # database backends keep their connection to the model server open between calls
    # (proxy_headers off: uvicorn would take X-Forwarded-For from any local client as its address, and
    # the console limits sign-in attempts per address)
    Server(uvicorn.Config(create_app(settings, token, worker=worker), host=host, port=port, log_level="warning",
                          proxy_headers=False,
                          access_log=False, timeout_keep_alive=300)).run()


# -- vectorizer worker -------------------------------------------------------------------------
@command(app)
def worker(ctx: typer.Context,
           vectorizer: Optional[list[str]] = typer.Option(None, "--vectorizer", help="Only these vectorizers "
                                                                                    "(repeatable; default all)."),
           batch: int = typer.Option(32, help="Source rows per batch."),
           lease: float = typer.Option(120.0, help="Seconds a claimed batch stays leased to this worker unless "
                                                    "renewed (a live worker renews it every third of that)."),
           once: bool = typer.Option(False, "--once", help="Drain the queues, then exit.")):
    """Run a vectorizer worker (run several, on several machines, to scale out)."""
    _passive_openmp()
    logging.getLogger().setLevel(logging.INFO)
    with _library(ctx) as db:
        totals = db.run_worker(vectorizer or None, batch=batch, lease=lease, once=once,
                               stop=None if once else _stop_on_signals())
    if once:
        console.print(f"done: {totals.rows} rows, {totals.chunks} chunks, {totals.quarantined} quarantined")


def _stop_on_signals():
    """An event that SIGTERM and SIGINT set."""
    import signal
    import threading
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def _show_rows(rows: list[dict], as_json: bool, columns: tuple[str | tuple[str, str], ...]) -> None:
    """Rows as JSON objects, or as a table of these columns: a key, or (key, header).  Each cell is
    looked up by its key (never by position: the library's dicts need not list keys in this order)."""
    if as_json:
        print(json.dumps(rows, default=str, ensure_ascii=False, indent=2))
        return
    columns = tuple((c, c) if isinstance(c, str) else c for c in columns)
    cells = [["" if r.get(key) is None else str(r.get(key)) for key, _ in columns] for r in rows]
    table = Table(*(header for _, header in columns))
    for row in cells:
        table.add_row(*row)
    from rich.cells import cell_len
    natural = sum(max([cell_len(header)] + [cell_len(row[i]) for row in cells]) + 3
                  for i, (_, header) in enumerate(columns)) + 1
    if natural <= console.width or not cells:
        console.print(table)
        return
    # wider than the terminal (rich would cut every cell, the headers to a letter): one
    # "header: value" line a cell, a blank line between rows
    width = max(len(header) for _, header in columns)
    for i, row in enumerate(cells):
        if i:
            console.print()
        for (_, header), value in zip(columns, row):
            console.print(f"{header:>{width}}: {value}", markup=False, highlight=False)


@command(vectorizer_app, "status")
def vectorizer_status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Pending, leased, done and failed rows of each vectorizer, its state (done, working, queued, no
    worker running, paused), lag, throughput and ETA."""
    with _library(ctx) as db:
        rows = db.vectorizer_status()
    _show_rows(rows, as_json, ("name", "version", "status", "state", "model", "pending", "leased", "done",
                               "errors", "lag_seconds", "rows_per_second", "eta_seconds", "workers",
                               "paused", "last_error"))


@command(vectorizer_app, "backfill")
def vectorizer_backfill(ctx: typer.Context, name: str = typer.Argument(..., help="The vectorizer."),
                        batch: int = typer.Option(32, help="Source rows per batch."),
                        ray: Optional[str] = typer.Option(
                            None, "--ray", metavar="[ADDRESS]",
                            help="Embed the vectorizer's queue on a Ray cluster (Ray comes with pgmind's optional extra, ray): "
                                 "--ray alone or --ray auto starts a local one; --ray HOST:PORT (the head node's "
                                 "address, as `ray start --head` prints it) or ray://HOST:10001 joins one. "
                                 "Without --requeue a re-run resumes from what is still queued."),
                        requeue: Optional[bool] = typer.Option(
                            None, "--requeue/--no-requeue",
                            help="Queue every row again first (default: yes here, no with --ray)."),
                        actors: Optional[int] = typer.Option(None, help="With --ray: actors, one model copy each "
                                                                        "(default: one per CPU, or per GPU)."),
                        lease: float = typer.Option(120.0, help="With --ray: seconds a claimed batch stays leased "
                                                                "(a killed actor's rows wait this long).")):
    """Queue every row of the source table and embed them here, or on a Ray cluster with --ray; a progress bar."""
    if ray is None:
        _passive_openmp()
        with _library(ctx) as db:
            with _EmbedBar(name) as bar:
                totals = db.backfill(name, batch=batch, progress=bar, requeue=requeue)
            _print_totals(totals, db, name)      # (pgmind serve's worker may have embedded part of it)
        return
    with _library(ctx) as db, _RayBar(name) as bar:
        result = db.backfill(name, batch=batch, progress=bar, ray=ray, requeue=requeue, actors=actors, lease=lease)
    console.print(f"{result.rows} rows, {result.chunks} chunks, {result.quarantined} quarantined, on {result.actors} "
                  f"Ray actors ({result.shards} shards) at {result.address} in {result.seconds:.1f} s")
    if result.paused:
        err_console.print(f"[yellow]paused: {result.left} rows still queued[/] (select ai.resume_vectorizer('{name}'), "
                          f"then run the backfill again)")
    elif result.left:
        err_console.print(f"[yellow]{result.left} rows still queued[/] (leased by a worker, or waiting to be retried: "
                          f"see pgmind vectorizer status)")


@command(vectorizer_app, "pause")
def vectorizer_pause(ctx: typer.Context, name: str = typer.Argument(..., help="The vectorizer.")):
    """Stop workers and Ray backfills claiming the vectorizer's queue (batches in flight finish; changes still queue)."""
    with _library(ctx) as db:
        changed = db.pause_vectorizer(name)
    console.print(f"{name}: {'paused' if changed else 'already paused'} (resume with pgmind vectorizer resume {name})")


@command(vectorizer_app, "resume")
def vectorizer_resume(ctx: typer.Context, name: str = typer.Argument(..., help="The vectorizer.")):
    """Let workers and Ray backfills claim the vectorizer's queue again."""
    with _library(ctx) as db:
        changed = db.resume_vectorizer(name)
    console.print(f"{name}: {'resumed' if changed else 'was not paused'}")


# -- models ----------------------------------------------------------------------------------
@command(models_app, "list")
def models_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the registered models (secrets are never shown)."""
    with _library(ctx) as db:
        models = db.models()
    rows = [{**m, "dimensions": "" if m["dimensions"] is None else str(m["dimensions"]),
             "url": "(local)" if m["url"] is None else m["url"], "granted_to": ",".join(m["granted_to"])}
            for m in models]
    _show_rows(rows, as_json, (("model_id", "model"), "provider", "type", "name", ("dimensions", "dims"), "url",
                               ("granted_to", "granted to")))


@command(models_app, "show")
def models_show(ctx: typer.Context, model: str = typer.Argument(..., help="The model id.")):
    """Show one model's registration."""
    with _library(ctx) as db:
        print(json.dumps(db.model(model), ensure_ascii=False, indent=2, default=str))


@command(models_app, "add")
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
    with _library(ctx) as db:
        db.add_model(model, provider=provider, type=type, name=name, url=url, key_env=key_env, options=options)
    console.print(f"registered {model}")


@command(models_app, "test")
def models_test(ctx: typer.Context, model: str = typer.Argument(..., help="The model id."),
                text: str = typer.Option("PostgreSQL 是一个数据库。PostgreSQL is a database.", help="Input text.")):
    """Call a model once through SQL (the whole path: database, model server, model) and time it."""
    with _library(ctx) as db:
        t = db.test_model(model, text)
    if t.model_type == "embedding":
        console.print(f"{len(t.output)} dimensions: [{', '.join(f'{x:.4f}' for x in t.output[:4])}, …]")
    else:
        console.print(t.output if t.model_type == "chat" else json.dumps(t.output)[:200])
    console.print(f"[dim]{t.seconds * 1000:.0f} ms[/]")


# -- knowledge bases: ingest, search, ask --------------------------------------------------------
@command(app)
def ingest(ctx: typer.Context, sources: List[str] = typer.Argument(
               ..., metavar="FOLDER_OR_URL...",
               help="A folder of documents: .html, .md, .txt, .pdf, .docx, .csv and .xlsx files (text in UTF-8, "
                    "UTF-16, GBK/GB18030 or Big5); and/or http(s) URLs of pages under ai.load_allow_list, one "
                    "page each (links are not followed), read by their content type."),
           into: str = typer.Option(..., "--into", help="The table (and vectorizer) name, e.g. pg_docs."),
           model: str = typer.Option("e5-small", help="The embedding model of a new vectorizer."),
           embed: bool = typer.Option(True, "--embed/--no-embed", help="Embed the changed files now "
                                                                       "(else a worker does it)."),
           batch: int = typer.Option(16, help="Files per embedding batch."),
           topic: Optional[str] = typer.Option(None, help="What the documents are about, e.g. PostgreSQL: "
                                                          "the chat model expands questions with it."),
           rows: bool = typer.Option(False, "--rows", help="Each row of a .csv, .tsv or .xlsx file is a document "
                                                           "(its header row names the fields); else each file is one.")):
    """Load a folder and/or web pages into a table with a vectorizer; re-running updates changed files and pages
    and removes deleted files (and pages that answer 404 or 410)."""
    _passive_openmp()
    with _library(ctx) as db:
        pages = any(s[:8].lower().startswith(("http://", "https://")) for s in sources)
        with _ReadBar("reading files and pages" if pages else "reading files", rate=True) as bar:
            result = db.ingest(sources, into, model=model, topic=topic, rows=rows, progress=bar)
        _print_ingest(result, rows)
        if embed:       # (the summary first: embedding may take long, or fail)
            with _EmbedBar("embedding") as bar:
                totals = db.embed_pending(into, batch=batch, progress=bar)
            _print_totals(totals, db, into)


def _print_ingest(result, rows: bool) -> None:
    from collections import Counter
    textless = sum(why in ("an empty file", "no text in it") for _, why in result.skipped)
    found = f"{result.files} files" + (f", {result.urls} {'URL' if result.urls == 1 else 'URLs'}" if result.urls else "")
    console.print(f"{found}: {result.changed} {'rows' if rows else 'documents'} new or changed, "
                  f"{result.unchanged} unchanged, {result.removed} removed, {len(result.skipped)} skipped "
                  f"({len(result.skipped) - textless - result.not_allowed} not documents, {textless} without text"
                  + (f", {result.not_allowed} not allowed" if result.not_allowed else "") + "), "
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


@command(app, "ingest-images")
def ingest_images(ctx: typer.Context, folder: str = typer.Argument(..., help="A folder of pictures (JPEG, PNG, WebP, GIF, BMP, TIFF)."),
                  into: str = typer.Option(..., "--into", help="The table (and image vectorizer) name, e.g. photos."),
                  model: str = typer.Option("image-features", help="The image model of a new vectorizer."),
                  store_bytes: bool = typer.Option(False, "--bytes", help="Store the files in the table "
                                                                          "(else their paths, loaded when embedded)."),
                  ocr: bool = typer.Option(False, "--ocr", help="Also read the text in the pictures (about 1 s each)."),
                  allow_load: bool = typer.Option(False, "--allow-load", help="Add the folder to ai.load_file's "
                                                  "allow-list if it is not on it (administrators; without --bytes "
                                                  "the vectorizer reads the pictures from there)."),
                  embed: bool = typer.Option(True, "--embed/--no-embed", help="Embed the new pictures now."),
                  batch: int = typer.Option(16, help="Pictures per embedding batch.")):
    """Load a folder of pictures into a table with an image vectorizer (re-running updates it)."""
    _passive_openmp()
    with _library(ctx) as db:
        with _ReadBar("reading pictures", rate=False) as bar:
            result = db.ingest_images(folder, into, model=model, store_bytes=store_bytes, ocr=ocr,
                                      allow_load=allow_load, progress=bar)
        console.print(f"{result.files} pictures: {result.changed} new or changed, {result.unchanged} unchanged, "
                      f"{result.removed} removed, {len(result.failed)} unreadable")
        if result.allowed:
            console.print(f"added {result.allowed} to ai.load_file's allow-list (select * from ai.load_allow_list)")
        for path, why in result.failed:
            err_console.print(f"[yellow]skipped {path}: {why}[/yellow]")
        if embed:
            with _EmbedBar("embedding pictures") as bar:
                totals = db.embed_pending(into, batch=batch, progress=bar)
            _print_totals(totals, db, into)


@command(app, "search-images")
def search_images(ctx: typer.Context,
                  query: str = typer.Argument(..., help="Words (any language), or the path of a picture to find alike."),
                  into: str = typer.Option(..., "--in", help="The image knowledge base (see ingest-images)."),
                  k: int = typer.Option(10, "-k", help="How many results."),
                  filter: Optional[str] = typer.Option(None, help="A SQL condition on the table, e.g. \"width > 500\"."),
                  sheet: Optional[str] = typer.Option(None, "--open", help="Write a contact sheet PNG of the hits here."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Find pictures by words or by a picture; prints paths and scores."""
    from pathlib import Path
    q: str | bytes = Path(query).read_bytes() if Path(query).is_file() else query
    with _library(ctx) as db:
        hits = db.search_images(into, q, k=k, filter=filter)
        if sheet and hits:
            console.print(f"contact sheet: {db.contact_sheet(into, hits, sheet)}")
    if as_json:
        print(json.dumps([h.__dict__ for h in hits], ensure_ascii=False, indent=2))
        return
    for i, h in enumerate(hits, 1):
        sim = f"  similarity {h.similarity:.3f}" if h.similarity is not None else ""
        console.print(f"[bold]{i}. {h.path}[/]  score {h.score:.4f}{sim}", markup=True, highlight=False)
        console.print("   " + " ".join(h.description.split())[:200], markup=False)


# -- training --------------------------------------------------------------------------------
@command(app)
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
    with _library(ctx) as db, _TrainingBar() as bar:
        job = db.finetune(kb, base=base, name=name, pairs=pairs, method=method, epochs=epochs, questions=questions,
                          force=force, progress=bar)
    _ran_elsewhere(job)
    table = Table("held-back pairs", "before", "after")
    for key in ("recall@1", "recall@5", "recall@10", "mrr"):
        b, a = (job.metrics.get(x, {}).get(key) for x in ("before", "after"))
        table.add_row(key, f"{b:.3f}" if b is not None else "", f"{a:.3f}" if a is not None else "")
    console.print(table)
    console.print(f"pairs: {job.metrics.get('pairs')}")
    _job_end(job, f"switch with select ai.alter_vectorizer('{kb}', model => '{job.new_model}')")


@command(app, "train-images")
def train_images(ctx: typer.Context, source: str = typer.Argument(..., help="A name for what the images are (the job's source)."),
                 query: str = typer.Option(..., "--from", help="A SQL query of (image bytea, label text)."),
                 text_model: str = typer.Option("use-m3", help="The local text model whose space the images join."),
                 name: Optional[str] = typer.Option(None, help="The new image model's id (default <source>-encoder)."),
                 epochs: int = typer.Option(3, help="Passes over the images (the best on held-out images is kept)."),
                 translate: bool = typer.Option(True, help="Have the chat model name each label in the other language.")):
    """Train an image encoder on labelled images, so words (English and Chinese) and pictures find them."""
    with _library(ctx) as db, _TrainingBar() as bar:
        job = db.train_image_encoder(source, query, text_model=text_model, name=name, epochs=epochs,
                                     translate=translate, progress=bar)
    _ran_elsewhere(job)
    after = job.metrics.get("after", {})
    for key in ("text_to_image_p10", "image_to_image_p10", "label_accuracy", "held_out"):
        if key in after:
            console.print(f"{key}: {after[key]:.3f}" if isinstance(after[key], float) else f"{key}: {after[key]}")
    _job_end(job, f"an image vectorizer with model => '{job.new_model}' finds these pictures by words")


def _ran_elsewhere(job) -> None:
    """Says so when another runner (a model server's trainer) ran the job: what follows is its row."""
    if not job.ran_here:
        console.print(f"job {job.id} was run by a model server's trainer (select * from ai.training_jobs "
                      f"where id = {job.id})", markup=False, highlight=False)


def _job_end(job, use: str) -> None:
    """A training job's last line: its failure (exit code 1), or the model it registered and its use."""
    if job.state != "done":
        console.print(f"[red]job {job.id} {job.state}[/]: {job.error or ''}", markup=True)
        raise typer.Exit(1)
    console.print(f"registered [bold]{job.new_model}[/]: {use}", markup=True)


# -- progress bars: the library reports, the CLI draws -------------------------------------------
class _Bar:
    """A rich progress bar over a library call: the call's progress callback, and a context manager.
    It appears at the call's first report (after connecting, once the work has begun)."""

    def __init__(self, *columns):
        from rich.progress import Progress
        self.progress = Progress(*columns, console=console)
        self.task = None

    def _task(self, label: str, **fields):
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(label, **fields)
        return self.task

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.task is not None:
            self.progress.stop()


class _ReadBar(_Bar):
    """Files read of the files found: progress(i, n), n None until they are counted."""

    def __init__(self, label: str, rate: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
        super().__init__(*columns, *((TextColumn("{task.fields[rate]}"), TimeRemainingColumn()) if rate else ()))
        self.label, self.fields = label, {"rate": ""} if rate else {}

    def __call__(self, i: int, n: int | None) -> None:
        self.progress.update(self._task(self.label, total=None, **self.fields), completed=i, total=n)


class _EmbedBar(_Bar):
    """Source rows embedded of those queued, and chunks per second: progress(EmbedProgress)."""

    def __init__(self, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        super().__init__(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
        self.label = label

    def __call__(self, p) -> None:
        rate = f"{p.chunks / max(p.seconds, 1e-6):.1f} chunks/s" if p.seconds else ""
        self.progress.update(self._task(self.label, total=p.total, rate=""), completed=p.done, rate=rate)


class _RayBar(_Bar):
    """A Ray backfill: queued rows done of those queued when it began, rows/s and the time left:
    progress(RayProgress)."""

    def __init__(self, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
        super().__init__(TextColumn("[bold]{task.description} (Ray)"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[eta]}"))
        self.label = label

    def __call__(self, p) -> None:
        rate = f"{p.rows_per_second:.1f} rows/s" if p.seconds else ""
        eta = "" if p.eta_seconds is None else f"ETA {int(p.eta_seconds) // 60}:{int(p.eta_seconds) % 60:02d}"
        self.progress.update(self._task(self.label, total=p.total, rate="", eta=""), completed=p.done, rate=rate,
                             eta=eta)


class _TrainingBar(_Bar):
    """A training job's fraction done, under its id: progress(job_id, fraction)."""

    def __init__(self):
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        super().__init__(TextColumn("[bold]training job {task.fields[job]}"), BarColumn(),
                         TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())

    def __call__(self, job_id: int, fraction: float) -> None:
        self.progress.update(self._task("train", total=1.0, job=job_id), completed=fraction)


def _print_totals(totals, db=None, name: str | None = None) -> None:
    """What this process embedded and, with the knowledge base named, where it stands: another
    worker (pgmind serve's) may have done part of the work, so this process's count alone misleads."""
    console.print(f"{totals.rows} rows, {totals.chunks} chunks, {totals.quarantined} quarantined")
    for s in (db.vectorizer_status() if db is not None else []):
        if s["name"] == name and s["status"] == "active":
            console.print(f"{name}: {s['done']} documents embedded, {s['pending'] + s['leased']} queued, "
                          f"{s['errors']} quarantined ({s['state']})", markup=False, highlight=False)


# -- search and ask ----------------------------------------------------------------------------
@command(app)
def search(ctx: typer.Context, query: str = typer.Argument(..., help="What to look for."),
           into: str = typer.Option(..., "--in", help="The vectorizer (knowledge base) to search."),
           k: int = typer.Option(5, "-k", help="How many results."),
           mode: str = typer.Option("hybrid", help="vector, keyword or hybrid."),
           filter: Optional[str] = typer.Option(None, help="A SQL condition on the source table, "
                                                           "e.g. \"section = 'sql'\"."),
           expand: bool = typer.Option(False, "--expand", help="Also search the chat model's short answer "
                                                               "(better on vague questions; seconds slower)."),
           chunks_per_source: int = typer.Option(2, "--chunks-per-source", min=0,
                                                 help="At most this many chunks of one document (0: all)."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Search a knowledge base by meaning, by words, or both: documents, each with its best chunks."""
    with _library(ctx) as db:
        hits = db.search(into, query, k=k, mode=mode, filter=filter, expand=expand,
                         chunks_per_source=chunks_per_source or None)
    if as_json:
        print(json.dumps([h.__dict__ for h in hits], ensure_ascii=False, indent=2))
        return
    _print_hits(hits)


def _print_hits(hits) -> None:
    """One numbered line a document (its score, its rank in each list that was fused), then its
    chunks, each with its own score: a document's chunks come together (ai.search orders them so)."""
    n, last = 0, None
    for h in hits:
        if h.key != last:
            n, last = n + 1, h.key
            ranks = "  ".join(f"{name} #{v['rank']}" for name, v in (h.lists or {}).items())
            console.print(f"[bold]{n}. {escape(', '.join(str(v) for v in h.key.values()))}[/]  score {h.score:.4f}"
                          + (f"  [dim]{escape(ranks)}[/]" if ranks else ""))
        # (keyword search does not embed the question: no similarity)
        sim = f"  similarity {h.similarity:.3f}" if h.similarity is not None else ""
        console.print(f"   #{h.chunk_seq}  {h.chunk_score if h.chunk_score is not None else h.score:.4f}{sim}  "
                      + " ".join(h.chunk.split())[:300], markup=False, highlight=False)


@command(app)
def ask(ctx: typer.Context, question: str = typer.Argument(..., help="The question, in Chinese or English."),
        into: str = typer.Option(..., "--in", help="The vectorizer (knowledge base) to ask."),
        model: Optional[str] = typer.Option(None, help="The chat model (default: the knowledge base's)."),
        k: Optional[int] = typer.Option(None, "-k", help="How many chunks to retrieve.")):
    """Answer a question from a knowledge base: the model's draft as it is written, then the answer
    checked against the sources, with its confidence, then its sources."""
    with _library(ctx) as db:
        stream = db.ask(into, question, k=k, model=model, stream=True)
        # (on a terminal the draft shows as it is written and gives way to the checked answer; in a
        # pipe or a log only the checked answer is printed)
        with Live(Text(""), console=console, transient=True, refresh_per_second=8) as live:
            draft = ""
            for piece in stream:
                draft += piece
                live.update(Text(draft, style="dim"))
        result = stream.result
        console.print(result.answer, markup=False, highlight=False)
        if result.confidence:
            console.print(label(result.confidence, question), style="bold", markup=False, highlight=False)
        if why_declined(result.decline, question):
            console.print(why_declined(result.decline, question), style="dim", markup=False, highlight=False)
        for src in result.sources:
            key = ", ".join(str(v) for v in src["key"].values())
            console.print(f"[dim][{src['n']}] {key} #{src['chunk_seq']} (similarity {src['similarity']:.3f})[/]")


@command(app, "eval")
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
    from .evaluation import report_lines
    with _library(ctx) as db:
        report = db.evaluate(name, questions, modes=mode, rerank=rerank, answers=answers, model=model,
                             calibrate=calibrate)
    if as_json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return
    for part in report_lines(report, name, rerank):
        console.print(part)


# -- status ----------------------------------------------------------------------------------
@command(app)
def status(ctx: typer.Context):
    """Is everything up? The database, the ai schema, the model server."""
    with _library(ctx) as db:
        st = db.status()
    d, s = st["database"], st["model_server"]
    console.print(f"database      [red]{d['error']}[/]" if d["error"] else
                  f"database      ok ({d['migrations']} migrations applied)" if d["migrations"] else
                  "database      ok, [yellow]ai schema not installed: run `pgmind install`[/]")
    console.print(f"model server  [red]not reachable at {s['url']}[/] (start it with `pgmind serve`)"
                  if s["status"] is None else
                  f"model server  {'ok' if s['status'] == 200 else s['status']} at {s['url']}")
    raise typer.Exit(0 if st["ok"] else 1)


if __name__ == "__main__":
    sys.exit(app())
