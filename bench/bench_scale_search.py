"""Search at scale (issue 40): `ai.search` (vector, keyword, hybrid) p50 / p95 and recall@10 against
exact search at 10k, 100k and 1M chunks, with filters of 1% and 10% selectivity; the HNSW index's
build time and size; an ef_search sweep.

The chunks are real: the texts and vectors of a knowledge base (`--base-dsn`, `--base-name`: by
default the demo's `pg_docs`, the PostgreSQL manual in 11,595 `use-m3` chunks).  Past its size,
each further chunk is a mixture of two real chunks with noise: x = normalize(v_i + a·v_j + s·g),
a ~ U(0, 0.5), g ~ N(0, I/d), s = `--noise` (0.2), keeping chunk i's text; the first chunks are
the real ones unchanged.  Each source row has `cat`, uniform in 0..99: `cat = 0` is the 1% filter,
`cat < 10` the 10% one.  The questions are the English ones of eval/*.jsonl.

Recall@10, vector: ai.search's keys against exact nearest neighbours of the same query vector
(numpy, cosine, on the same rows and filter).  Hybrid: ai.search against the same call with the
HNSW index turned off (`enable_indexscan = off`: the vector list exact; the keyword list is exact
either way, GIN + ts_rank over every match).  Keyword search has no approximate part.

Against a running stack with the model server (`pgmind db up && pgmind install && pgmind serve
--no-worker &`; the settings from PGMIND_HOME / PGMIND_PG_PORT / PGMIND_DSN):

    nice -n 19 .venv/bin/python bench/bench_scale_search.py --sizes 10000 100000 1000000 \
        --base-dsn "host=$PWD/.pgmind/run port=54329 dbname=pgmind user=pgmind"
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pgmind.config import load_settings  # noqa: E402
from pgmind.db import Cluster, connect  # noqa: E402

NAME = "scale_search"
FILTERS = {"none": None, "10%": "cat < 10", "1%": "cat = 0"}
EF_SWEEP = (10, 20, 40, 80, 160, 320)


def ms(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q))


def load_base(dsn: str, name: str, cache: Path) -> tuple[np.ndarray, list[str], str]:
    if cache.with_suffix(".npy").exists():
        meta = json.loads(cache.with_suffix(".json").read_text())
        return np.load(cache.with_suffix(".npy")), meta["texts"], meta["model"]
    with connect(dsn) as conn:
        store, model = conn.execute("select destination, model from ai.vectorizer_status where name = %s "
                                    "and status = 'active'", (name,)).fetchone()
        rows = conn.execute(f"select chunk, embedding::text from {store} order by 1").fetchall()
    vecs = np.array([json.loads(v) for _, v in rows], dtype=np.float32)
    texts = [c for c, _ in rows]
    np.save(cache.with_suffix(".npy"), vecs)
    cache.with_suffix(".json").write_text(json.dumps({"texts": texts, "model": model}))
    return vecs, texts, model


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_vectors(base: np.ndarray, n: int, noise: float, seed: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """n vectors (the real ones first, then mixtures with noise) and, for each, its base chunk."""
    rng = np.random.default_rng(seed)
    b = normalize(base)
    real = min(n, len(b))
    src = np.concatenate([np.arange(real), rng.integers(0, len(b), n - real)])
    out = np.empty((n, b.shape[1]), dtype=np.float32)
    out[:real] = b[:real]
    step = 100_000
    for s in range(real, n, step):
        e = min(n, s + step)
        j = rng.integers(0, len(b), e - s)
        a = rng.uniform(0, 0.5, (e - s, 1)).astype(np.float32)
        g = rng.standard_normal((e - s, b.shape[1])).astype(np.float32) / np.sqrt(b.shape[1])
        out[s:e] = normalize(b[src[s:e]] + a * b[j] + noise * g)
    return out, src


def load(conn, model: str, vecs: np.ndarray, src: np.ndarray, texts: list[str], cats: np.ndarray,
         maintenance_mem: str, workers: int) -> dict:
    """A fresh vectorizer over a fresh table, its chunk table filled by COPY, then the indexes built."""
    from pgvector.psycopg import register_vector
    register_vector(conn)
    if conn.execute("select 1 from ai.vectorizers where name = %s", (NAME,)).fetchone():
        conn.execute("select ai.drop_vectorizer(%s)", (NAME,))
    conn.execute(f"drop table if exists {NAME}_src cascade")
    conn.execute(f"create table {NAME}_src (id int primary key, cat int not null, body text)")
    conn.execute(f"select ai.create_vectorizer('{NAME}_src'::regclass, name => '{NAME}', content => 'body', "
                 "model => %s, index => '{\"type\": \"none\"}'::jsonb, backfill => false)", (model,))
    store = conn.execute("select store_table from ai.vectorizer_versions v join ai.vectorizers z "
                         "on z.id = v.vectorizer_id where z.name = %s", (NAME,)).fetchone()[0]
    out = {"store": store}
    # (the vectorizer made the words' index: it is built again after the load, and timed)
    conn.execute(f"drop index if exists {store}_fts_idx")
    t = time.perf_counter()
    # the source rows without firing the vectorizer's trigger (the chunks are loaded directly)
    conn.execute("set session_replication_role = replica")
    with conn.cursor().copy(f"copy {NAME}_src (id, cat) from stdin") as copy:
        for i, c in enumerate(cats.tolist()):
            copy.write_row((i, c))
    conn.execute("set session_replication_role = origin")
    with conn.cursor().copy(f"copy {store} (id, chunk_seq, chunk, embedding) from stdin with (format binary)") as copy:
        copy.set_types(["int4", "int4", "text", "vector"])
        for i in range(len(vecs)):
            copy.write_row((i, 0, texts[src[i]], vecs[i]))
    conn.execute(f"vacuum analyze {NAME}_src")
    conn.execute(f"vacuum analyze {store}")
    out["load_s"] = time.perf_counter() - t
    conn.execute(f"set maintenance_work_mem = '{maintenance_mem}'")
    conn.execute(f"set max_parallel_maintenance_workers = {workers}")
    t = time.perf_counter()
    conn.execute(f"create index {store}_embedding_idx on {store} using hnsw (embedding vector_cosine_ops) "
                 "with (m = 16, ef_construction = 64)")
    out["hnsw_s"] = time.perf_counter() - t
    t = time.perf_counter()
    conn.execute(f"create index {store}_fts_idx on {store} using gin (fts)")
    out["gin_s"] = time.perf_counter() - t
    conn.execute(f"analyze {store}")
    out["hnsw_bytes"] = conn.execute("select pg_relation_size(%s::regclass)", (f"{store}_embedding_idx",)).fetchone()[0]
    out["table_bytes"] = conn.execute("select pg_table_size(%s::regclass)", (store,)).fetchone()[0]
    out["gin_bytes"] = conn.execute("select pg_relation_size(%s::regclass)", (f"{store}_fts_idx",)).fetchone()[0]
    return out


def search(conn, q: str, mode: str, filt: str | None, exact: bool = False) -> tuple[list[int], float]:
    with conn.transaction():
        if exact:
            conn.execute("set local enable_indexscan = off")
        t = time.perf_counter()
        rows = conn.execute("select key from ai.search(%s, %s, k => 10, mode => %s, filter => %s)",
                            (NAME, q, mode, filt), prepare=False).fetchall()
        dt = time.perf_counter() - t
    return [r[0]["id"] for r in rows], dt


def exact_ids(vecs: np.ndarray, qv: np.ndarray, mask: np.ndarray | None) -> list[int]:
    sims = vecs @ qv
    if mask is not None:
        sims = np.where(mask, sims, -np.inf)
    top = np.argpartition(-sims, 10)[:10]
    return top[np.argsort(-sims[top])].tolist()


def bench_size(conn, n, base, texts, model, questions, qvecs, args) -> dict:
    vecs, src = make_vectors(base, n, args.noise)
    cats = np.random.default_rng(7).integers(0, 100, n)
    if args.reuse:       # the tables a killed or --keep run left: measure again, load nothing
        store = conn.execute("select store_table from ai.vectorizer_versions v join ai.vectorizers z "
                             "on z.id = v.vectorizer_id where z.name = %s", (NAME,)).fetchone()[0]
        assert conn.execute(f"select count(*) from {store}").fetchone()[0] == n, "not the same size"
        res = {"n": n, "store": store, "reused": True}
        if not conn.execute("select 1 from pg_indexes where indexname = %s", (f"{store}_fts_idx",)).fetchone():
            t = time.perf_counter()
            conn.execute(f"create index {store}_fts_idx on {store} using gin (fts)")
            res["gin_s"] = time.perf_counter() - t
    else:
        res = {"n": n, **load(conn, model, vecs, src, texts, cats, args.maintenance_work_mem, args.parallel)}
    print(json.dumps(res), file=sys.stderr, flush=True)
    masks = {"none": None, "10%": cats < 10, "1%": cats == 0}
    for q in questions[:3]:                                   # warm the caches and the model
        search(conn, q, "vector", None)
    lat, rec = {}, {}
    for mode in args.modes:
        for f, cond in FILTERS.items():
            times, recalls = [], []
            for i, q in enumerate(questions):
                ids, dt = search(conn, q, mode, cond)
                times.append(dt)
                if mode == "vector":
                    truth = exact_ids(vecs, qvecs[i], masks[f])
                    recalls.append(len(set(ids) & set(truth)) / 10)
                elif mode == "hybrid" and i < args.exact_queries:
                    truth, _ = search(conn, q, mode, cond, exact=True)
                    recalls.append(len(set(ids) & set(truth)) / max(1, len(truth)))
            lat[f"{mode}/{f}"] = (ms(times, 50), ms(times, 95))
            rec[f"{mode}/{f}"] = float(np.mean(recalls)) if recalls else None
            print(mode, f, lat[f"{mode}/{f}"], rec[f"{mode}/{f}"], file=sys.stderr, flush=True)
    res["latency"], res["recall"] = lat, rec
    # the index alone: the nearest 10 by SQL, ef_search swept; and exact search (a sequential scan)
    sweep = {}
    sql = f"select id from {res['store']} order by embedding <=> %s::vector limit 10"
    for ef in EF_SWEEP:
        times, recalls = [], []
        for i in range(len(questions)):
            with conn.transaction():
                conn.execute(f"set local hnsw.ef_search = {ef}")
                conn.execute("set local enable_seqscan = off")     # (the index even where a scan looks cheaper)
                t = time.perf_counter()
                ids = [r[0] for r in conn.execute(sql, (qvecs[i],), prepare=False).fetchall()]
                times.append(time.perf_counter() - t)
            recalls.append(len(set(ids) & set(exact_ids(vecs, qvecs[i], None))) / 10)
        sweep[ef] = (float(np.mean(recalls)), ms(times, 50), ms(times, 95))
    times = []
    for i in range(min(len(questions), args.exact_queries)):
        with conn.transaction():
            conn.execute("set local enable_indexscan = off")
            t = time.perf_counter()
            conn.execute(sql, (qvecs[i],), prepare=False).fetchall()
            times.append(time.perf_counter() - t)
    res["sweep"], res["exact_sql"] = sweep, (ms(times, 50), ms(times, 95)) if times else (float("nan"),) * 2
    print(json.dumps({"sweep": sweep, "exact_sql": res["exact_sql"]}), file=sys.stderr, flush=True)
    if not args.keep:
        conn.execute("select ai.drop_vectorizer(%s)", (NAME,))
        conn.execute(f"drop table {NAME}_src")
    return res


def report(results: list[dict], base_n: int, model: str, nq: int, noise: float) -> None:
    print(f"\nchunks: the first {base_n:,} real (`{model}`, 512-d), the rest mixtures of two real ones + noise "
          f"{noise}; {nq} English questions; HNSW m=16, ef_construction=64\n")
    print("| chunks | load s | HNSW build s | HNSW size | table size | GIN build s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "hnsw_s" in r:
            print(f"| {r['n']:,} | {r['load_s']:.0f} | {r['hnsw_s']:.1f} | {r['hnsw_bytes'] / 2**20:.0f} MiB "
                  f"| {r['table_bytes'] / 2**20:.0f} MiB | {r['gin_s']:.1f} |")
    print("\n`ai.search` k=10 (query embedding included), p50 / p95 ms, and recall@10 against exact\n")
    print("| chunks | mode | no filter | 10% filter | 1% filter |")
    print("|---|---|---|---|---|")
    for r in results:
        for mode in [m for m in ("vector", "keyword", "hybrid") if f"{m}/none" in r["latency"]]:
            cells = []
            for f in FILTERS:
                p50, p95 = r["latency"][f"{mode}/{f}"]
                rc = r["recall"][f"{mode}/{f}"]
                cells.append(f"{p50:.0f} / {p95:.0f}" + (f", recall {rc:.3f}" if rc is not None else ""))
            print(f"| {r['n']:,} | {mode} | " + " | ".join(cells) + " |")
    print("\nthe index alone (SQL `order by embedding <=> q limit 10`, no filter): recall@10, p50 / p95 ms\n")
    print("| chunks | " + " | ".join(f"ef_search {ef}" for ef in EF_SWEEP) + " | exact (seq scan) |")
    print("|---|" + "---|" * (len(EF_SWEEP) + 1))
    for r in results:
        cells = [f"{rc:.3f}, {p50:.1f} / {p95:.1f}" for rc, p50, p95 in (r["sweep"][ef] for ef in EF_SWEEP)]
        print(f"| {r['n']:,} | " + " | ".join(cells) + f" | {r['exact_sql'][0]:.0f} / {r['exact_sql'][1]:.0f} |")


def main():
    global NAME
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--base-dsn", default=None, help="where the real chunks are (default: this stack)")
    ap.add_argument("--base-name", default="pg_docs")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/pgmind-scale-base"))
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--questions", type=int, default=50)
    ap.add_argument("--exact-queries", type=int, default=20, help="questions for hybrid recall and exact-scan timing")
    ap.add_argument("--maintenance-work-mem", default="4GB")
    ap.add_argument("--parallel", type=int, default=1, help="max_parallel_maintenance_workers for the index builds")
    ap.add_argument("--name", default=NAME, help="the throwaway vectorizer's name (and its table's)")
    ap.add_argument("--modes", nargs="*", default=["vector", "keyword", "hybrid"],
                    choices=["vector", "keyword", "hybrid"], help="ai.search modes to time (none: the index sweep only)")
    ap.add_argument("--reuse", action="store_true", help="measure the tables a --keep (or killed) run left")
    ap.add_argument("--keep", action="store_true", help="keep the last size's tables")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    NAME = args.name
    settings = load_settings()
    dsn = settings.dsn or Cluster(settings).dsn
    base, texts, model = load_base(args.base_dsn or dsn, args.base_name, args.cache)
    questions = []
    for f in sorted(Path("eval").glob("*.jsonl")):
        questions += [json.loads(line)["question"] for line in f.read_text().splitlines()
                      if line.strip() and json.loads(line).get("lang") == "en"]
    questions = questions[:args.questions]
    results = []
    with connect(dsn, autocommit=True) as conn:
        qvecs = normalize(np.array([json.loads(conn.execute("select ai.embed(%s, %s, 'query')::text",
                                                            (model, q)).fetchone()[0]) for q in questions],
                                   dtype=np.float32))
        for n in args.sizes:
            results.append(bench_size(conn, n, base, texts, model, questions, qvecs, args))
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    report(results, len(base), model, len(questions), args.noise)


if __name__ == "__main__":
    main()
