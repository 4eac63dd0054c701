"""How fast the web console opens a big knowledge base (issue 39: "a KB of 100,000 documents must
open in well under a second of server time").  A fresh sandbox; a table of N documents owned by a
role with an API key, its chunk table filled directly (no model runs: this measures the console, not
embedding; its vector index dropped, which these pages do not use), a thousand documents queued and a thousand quarantined.  Then, signed in as the owner
over loopback HTTP, the median and worst time of: the list of knowledge bases, the knowledge base's
page (first page of documents, a page from the middle by its cursor, the pending and quarantined
tabs), and one document; and the queue lag sample the health page's chart is made of (one grouped
query over the queue, run once a minute by the server).

    .venv/bin/python bench/bench_console.py [--docs 100000] [--rounds 20]

Prints one JSON line (ms; loopback round trips, so server time plus well under a millisecond)."""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx  # noqa: E402

from pgmind.db import connect  # noqa: E402
from pgmind.devserver import Sandbox  # noqa: E402


def timed(client: httpx.Client, path: str, rounds: int) -> dict:
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200
    return {"median_ms": round(statistics.median(out), 1), "max_ms": round(max(out), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    n = args.docs
    with Sandbox() as sb, connect(sb.dsn, autocommit=True) as conn:
        conn.execute("create role bench_owner")
        conn.execute("create schema bench authorization bench_owner")
        conn.execute("set role bench_owner")
        conn.execute("create table bench.docs (id int primary key, body text not null)")
        conn.execute("insert into bench.docs select g, 'document ' || g || ' about vacuum, indexes and '"
                     " || md5(g::text) from generate_series(1, %s) g", (n,))
        conn.execute("select ai.create_vectorizer('bench.docs'::regclass, name => 'big', content => 'body', "
                     "model => 'minilm', chunking => '{\"method\": \"none\"}', backfill => false)")
        conn.execute("reset role")
        vid, dims = conn.execute("select v.id, ver.dimensions from ai.vectorizers v join ai.vectorizer_versions ver "
                                 "on ver.vectorizer_id = v.id where v.name = 'big'").fetchone()
        # the chunk table's vector index is dropped first: the console's pages never use it (documents are
        # listed by key), and building it over 100,000 rows would be most of this benchmark's time
        for (index,) in conn.execute("""select i.indexrelid::regclass::text from pg_index i
                                        join pg_class c on c.oid = i.indexrelid join pg_am a on a.oid = c.relam
                                        where i.indrelid = 'bench.big_chunks_v1'::regclass
                                          and a.amname in ('hnsw', 'ivfflat')""").fetchall():
            conn.execute(f"drop index {index}")
        t = time.perf_counter()
        conn.execute(f"insert into bench.big_chunks_v1 (id, chunk_seq, chunk, embedding) "
                     f"select id, 0, body, array_fill(0.05::real, array[{dims}])::vector from bench.docs")
        conn.execute("analyze bench.big_chunks_v1")
        fill_s = time.perf_counter() - t
        conn.execute("insert into ai.vectorizer_queue (vectorizer_id, version, key) "
                     "select %s, 1, jsonb_build_object('id', g) from generate_series(1, 1000) g", (vid,))
        conn.execute("insert into ai._vectorizer_errors (vectorizer_id, version, key, error, sqlstate, attempts) "
                     "select %s, 1, jsonb_build_object('id', g), 'refused: input too long', 'PM002', 1 "
                     "from generate_series(1001, 2000) g", (vid,))
        key = conn.execute("select ai.create_api_key('bench_owner')").fetchone()[0]
        base = sb.settings.effective_server_url + "/console"
        with httpx.Client(base_url=base, timeout=60) as c:
            c.get("/signin")
            r = c.post("/signin", data={"key": key, "csrf": c.cookies["pgmind_pre"]})
            assert r.status_code == 303, r.text[:500]
            middle = json.dumps({"id": n // 2})
            out = {"docs": n, "chunk_fill_s": round(fill_s, 1),
                   "kb_list": timed(c, "/kbs", args.rounds),
                   "kb_page_first": timed(c, "/kbs/big", args.rounds),
                   "kb_page_middle": timed(c, "/kbs/big?" + httpx.QueryParams({"after": middle}).__str__(),
                                           args.rounds),
                   "kb_page_pending": timed(c, "/kbs/big?state=pending", args.rounds),
                   "kb_page_quarantined": timed(c, "/kbs/big?state=quarantined", args.rounds),
                   "document": timed(c, "/kbs/big/doc?" + str(httpx.QueryParams({"key": middle})), args.rounds)}
            page = c.get("/kbs/big").text
            assert len(re.findall(r'<tr class="doc">', page)) == 50
        # the health page's queue lag sample (console/lag.py), which the server runs once a minute
        from pgmind.console.lag import QUERY
        samples = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            conn.execute(QUERY).fetchall()
            samples.append((time.perf_counter() - t) * 1000)
        out["lag_sample"] = {"median_ms": round(statistics.median(samples), 1), "max_ms": round(max(samples), 1)}
        print(json.dumps(out))


if __name__ == "__main__":
    main()
