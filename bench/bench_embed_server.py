"""What the model server adds to an embedding: `/v1/embeddings` against the same model doing the
same work in this process, in the same run, interleaved request by request (a busy moment of the
machine falls on both alike), with the ratio of their throughputs.

- server: POST /v1/embeddings of ``--batch`` texts to a fresh sandbox server (its embedding cache
  off, so every request embeds; float vectors, as OpenAI's clients ask by default);
- in-process: pgmind's own loaded model (the same loader, the same bf16 choice) embedding the same
  texts, under the same OpenMP settings the server runs with (cli._passive_openmp), called as the
  server calls it (check, then embed);
- ``--loop``: also a hand-written sentence-transformers loop (`encode` under bf16 autocast): what
  a user would write, for scale.

Besides wall time, the CPU time each arm spent (the server's process and this client for the
server arm, this process for the others): on a machine so busy that wall times mean little (load
15-20 on 2 cores), CPU time per text is the steadier figure of what the server adds.

Texts are paragraphs of the PostgreSQL manual (four consecutive sentences, ~100-150 tokens).

    nice -n 10 .venv/bin/python bench/bench_embed_server.py [--model minilm] [--texts 2000] [--batch 32]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

# (before torch loads: what `pgmind serve` sets (cli._passive_openmp), for a like-for-like baseline;
# set here, not imported, so the bench runs under an older source tree too)
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ["PGMIND_EMBED_CACHE"] = "0"      # (the sandbox server: every request embeds)

import httpx  # noqa: E402

from bench_rag_latency import cpu, pct  # noqa: E402
from corpus import manual_sentences  # noqa: E402
from pgmind.db import connect  # noqa: E402
from pgmind.devserver import Sandbox  # noqa: E402
from pgmind.models.local.loader import load  # noqa: E402
from pgmind.models.spec import ModelSpec  # noqa: E402


def paragraphs(n: int) -> list[str]:
    s = manual_sentences(4 * n)
    return [" ".join(s[i:i + 4]) for i in range(0, 4 * n, 4)][:n]


class Running:
    """A pgmind already running, in Sandbox's shape (dsn, settings, server.pid)."""

    def __init__(self, home: str, server_pid: int):
        from types import SimpleNamespace

        from pgmind.config import load_settings
        self.settings = load_settings(home=home)
        self.dsn = self.settings.dsn or f"host={self.settings.home}/run port={self.settings.pg_port} dbname=pgmind user=pgmind"
        self.server = SimpleNamespace(pid=server_pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--loop", action="store_true", help="also a hand-written sentence-transformers loop")
    ap.add_argument("--home", help="a running pgmind's home (its server, token and database; its server started "
                                   "with PGMIND_EMBED_CACHE=0 and this home's PGMIND_SERVER_PORT given) instead of "
                                   "a fresh sandbox, for a machine too busy to start one in time")
    ap.add_argument("--server-pid", type=int, help="with --home: the server's process, for its CPU time")
    args = ap.parse_args()
    texts = paragraphs(args.texts)
    batches = [texts[i:i + args.batch] for i in range(0, len(texts), args.batch)]
    with (Running(args.home, args.server_pid) if args.home else Sandbox()) as sb:
        with connect(sb.dsn, autocommit=True) as conn:
            row = conn.execute("select model_id, provider, model_type, model_name, options, dimensions "
                               "from ai.model_registry where model_id = %s", (args.model,)).fetchone()
        spec = ModelSpec(row[0], row[1], row[2], row[3], options=row[4], dimensions=row[5])
        model = load(spec, sb.settings)
        st = None
        if args.loop:
            import torch
            st = model._model                       # (the same weights, called the plain way)

            def loop(batch):
                with torch.autocast("cpu", dtype=torch.bfloat16), torch.inference_mode():
                    return st.encode(batch, batch_size=len(batch), normalize_embeddings=True,
                                     convert_to_numpy=True)
        token = sb.settings.server_token(create=False)
        arms = {"server": [], "in-process": []} | ({"loop": []} if st is not None else {})
        cpu_s = dict.fromkeys(arms, 0.0)
        server_stat = Path(f"/proc/{sb.server.pid}/stat")

        def cpu_now(name: str) -> float:
            own = time.process_time()
            if name != "server":
                return own
            fields = server_stat.read_text().rsplit(")", 1)[1].split()
            return own + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with httpx.Client(base_url=sb.settings.effective_server_url, timeout=600,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            def server(batch):
                r = http.post("/v1/embeddings", json={"model": args.model, "input": batch})
                r.raise_for_status()
                return r.json()

            def in_process(batch):
                checked, _ = model.check(batch, True)
                return model.embed(checked, "query", validated=True)

            calls = {"server": server, "in-process": in_process, "loop": loop if st is not None else None}
            for name in arms:                          # (warm: the model loaded, a first pass made)
                calls[name](batches[0])
            names = list(arms)
            for i, batch in enumerate(batches):
                # (the order turns each batch: no arm always runs right after another)
                for name in names[i % len(names):] + names[:i % len(names)]:
                    c, t = cpu_now(name), time.perf_counter()
                    calls[name](batch)
                    arms[name].append(time.perf_counter() - t)
                    cpu_s[name] += cpu_now(name) - c
    print(f"\n{cpu()}; model {args.model}; {len(texts)} manual paragraphs in requests of {args.batch}; "
          f"arms interleaved request by request\n")
    base, base_cpu = sum(arms["in-process"]), cpu_s["in-process"]
    print("| arm | texts/s | p50 per request | p95 | throughput / in-process | CPU ms per text | CPU: in-process / arm |")
    print("|---|---|---|---|---|---|---|")
    for name, xs in arms.items():
        print(f"| {name} | {len(texts) / sum(xs):.1f} | {statistics.median(xs) * 1000:.0f} ms | "
              f"{pct(xs, 0.95) * 1000:.0f} ms | **{base / sum(xs):.3f}** | {cpu_s[name] / len(texts) * 1000:.1f} | "
              f"**{base_cpu / cpu_s[name]:.3f}** |")


if __name__ == "__main__":
    main()
