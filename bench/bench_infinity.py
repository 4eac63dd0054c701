"""pgmind's model server beside infinity-emb (michaelfeil/infinity), the same model on the same
machine in the same run: all-MiniLM-L6-v2 from the same local files, texts/s and CPU per text,
interleaved round by round (a busy moment of the machine falls on both alike).

Two shapes of load, each over the same ``--texts`` manual paragraphs every round:

- ``clients``: ``--clients`` concurrent clients (threads, each its own HTTP connection), each
  request one text: what many single-query callers do; the server must batch them itself;
- ``batch``: one client, requests of ``--batch`` texts: what an ingest job does.

Round r runs every server once per shape, the order turned by one each round (with two servers:
pgmind first, then infinity first, ...).  The figures are the median over ``--rounds`` rounds;
the ratio is pgmind's texts/s over the other's.  CPU: what each server's process (and any children)
used during its own passes; for pgmind also its PostgreSQL (each request checks the grant and
writes ai.call_log), reported apart; "idle CPU" is what a server used while the others ran (it
should be ~0; else it took cores from them).  Cosine: each server's vectors against pgmind's for
the first 100 texts (fp32: >= 0.999).

Both servers under the same OpenMP settings (GOMP_SPINCOUNT=10000, OMP_WAIT_POLICY=PASSIVE, what
`pgmind serve` sets), neither caching vectors (PGMIND_EMBED_CACHE=0; infinity's vector disk cache
is off by default), neither logging each request (pgmind serve has no access log; infinity runs
with --log-level warning).  pgmind runs in a fresh sandbox (bench_embed_server.py's way), with its
own precision choice (``auto``: bf16 autocast where the CPU multiplies bf16 natively, else fp32).
infinity runs "as installed" (``--dtype auto``: float32 on CPU) and, as a second server, with
``--dtype bfloat16`` (the weights converted; on a CPU without native bf16 torch emulates it: slow).

infinity-emb pins numpy<2 and sentence-transformers<4, so it lives in its own virtualenv, never
in .venv.  Once (or ``--setup``; a few minutes), with the CPU torch first so that pip does not
pull a CUDA one:

    python3 -m venv .venv-infinity
    .venv-infinity/bin/pip install "torch==2.13.0"            # 2.13.0+cpu, from /opt/wheels
    .venv-infinity/bin/pip install "infinity-emb[server,torch]==0.0.78"

(installed 2026-12-07: infinity-emb 0.0.78, torch 2.13.0+cpu, sentence-transformers 3.4.1,
transformers 4.57.6, numpy 1.26.4, fastapi 0.165.0, uvicorn 0.32.1; optimum is not installed, so
infinity's BetterTransformer path is skipped, and --compile is off by default.)  infinity loads
the model from pgmind's packaged directory (packaged_minilm_path()), offline (HF_HUB_OFFLINE=1),
its telemetry off (DO_NOT_TRACK=1, INFINITY_ANONYMOUS_USAGE_STATS=0).

    nice -n 10 .venv/bin/python bench/bench_infinity.py [--texts 2000] [--rounds 3] [--clients 16] \\
        [--batch 32] [--dtype auto --dtype bfloat16]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "src"))

# (before anything loads torch, and inherited by both servers: what `pgmind serve` sets)
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ["PGMIND_EMBED_CACHE"] = "0"      # (the sandbox server: every request embeds)

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from bench_embed_server import paragraphs  # noqa: E402
from bench_rag_latency import cpu  # noqa: E402
from pgmind.devserver import Sandbox, free_port  # noqa: E402

INFINITY_VERSION = "0.0.78"
INFINITY_ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "POSTHOG_DISABLED": "1",
}


def setup(venv: Path) -> None:
    """The install the docstring gives, into ``venv`` (idempotent: pip skips what is there)."""
    if not (venv / "bin" / "python").exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, f"infinity-emb[server,torch]=={INFINITY_VERSION}"], check=True)
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch, infinity_emb; "
                          "print(torch.__version__, infinity_emb.__version__)"],
                         check=True, capture_output=True, text=True).stdout.strip()
    print(f"{venv}: torch, infinity-emb {out}")
    if "+cpu" not in out.split()[0]:
        sys.exit(f"{venv} has torch {out.split()[0]}, not the CPU build: reinstall it with torch==2.13.0 first")


class Server:
    """One server under test: its base URL, request headers, model name and process."""

    def __init__(self, name: str, url: str, model: str, pid: int, headers: dict | None = None,
                 pg_pid: int | None = None):
        self.name, self.url, self.model, self.headers = name, url, model, headers or {}
        self.proc = psutil.Process(pid)
        self.pg = psutil.Process(pg_pid) if pg_pid else None

    @staticmethod
    def _tree_cpu(p: psutil.Process | None) -> float:
        if p is None:
            return 0.0
        total = 0.0
        for q in [p, *p.children(recursive=True)]:
            try:
                t = q.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def cpu(self) -> tuple[float, float]:
        """(the server's CPU seconds so far, its PostgreSQL's)."""
        return self._tree_cpu(self.proc), self._tree_cpu(self.pg)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=600)

    def embed(self, http: httpx.Client, texts) -> list:
        r = http.post("/v1/embeddings", json={"model": self.model, "input": texts})
        if r.status_code != 200:
            raise RuntimeError(f"{self.name}: HTTP {r.status_code}: {r.text[:300]}")
        data = r.json()["data"]
        if len(data) != (1 if isinstance(texts, str) else len(texts)):
            raise RuntimeError(f"{self.name}: {len(data)} vectors for {len(texts)} texts")
        return [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]


def start_infinity(venv: Path, model_dir: str, dtype: str, log_dir: Path, timeout: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [str(venv / "bin" / "infinity_emb"), "v2", "--model-id", model_dir, "--served-model-name", "minilm",
           "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
           "--url-prefix", "/v1", "--log-level", "warning"]
    if dtype != "auto":
        cmd += ["--dtype", dtype]
    log_path = log_dir / f"infinity-{dtype}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env={**os.environ, **INFINITY_ENV}, stdout=log, stderr=log,
                                cwd=str(log_dir))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:       # (/health answers once the model is loaded and warmed)
        if proc.poll() is not None:
            sys.exit(f"infinity ({dtype}) exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"infinity ({dtype}) did not answer within {timeout:g} s:\n{log_path.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_clients(server: Server, texts: list[str], clients: int) -> None:
    """``clients`` threads, each its own connection, taking the next text until none is left."""
    nxt = itertools.count()
    errors: list[BaseException] = []

    def client():
        try:
            with server.client() as http:
                while not errors:
                    i = next(nxt)
                    if i >= len(texts):
                        return
                    server.embed(http, texts[i])
        except BaseException as e:          # noqa: BLE001 (reported below, and the other threads stop)
            errors.append(e)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def run_batches(server: Server, batches: list[list[str]]) -> None:
    with server.client() as http:
        for b in batches:
            server.embed(http, b)


def cosines(a: list, b: list) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16, help="concurrent single-text clients")
    ap.add_argument("--batch", type=int, default=32, help="texts per request in the batch shape")
    ap.add_argument("--shapes", default="clients,batch", help="which shapes, comma-separated")
    ap.add_argument("--dtype", action="append", choices=("auto", "float32", "float16", "bfloat16"),
                    help="an infinity server per value (repeatable); auto is infinity as installed "
                         "(float32 on CPU). Default: auto and bfloat16")
    ap.add_argument("--venv", type=Path, default=ROOT / ".venv-infinity", help="infinity-emb's virtualenv")
    ap.add_argument("--model-dir", help="the model directory (default: pgmind's packaged all-MiniLM-L6-v2)")
    ap.add_argument("--start-timeout", type=float, default=600, help="seconds to wait for infinity to load")
    ap.add_argument("--setup", action="store_true", help="create --venv with infinity-emb, then exit")
    args = ap.parse_args()
    if args.setup:
        setup(args.venv)
        return
    if not (args.venv / "bin" / "infinity_emb").exists():
        sys.exit(f"no infinity-emb in {args.venv}: run with --setup first (see the docstring)")
    dtypes = args.dtype or ["auto", "bfloat16"]
    shapes = [s for s in args.shapes.split(",") if s]
    if set(shapes) - {"clients", "batch"}:
        sys.exit("--shapes takes clients and/or batch")
    if args.model_dir:
        model_dir = args.model_dir
    else:
        from pgmind.models.local.st import packaged_minilm_path
        model_dir = packaged_minilm_path()
    from pgmind.models.local.cpu import has_native_bf16
    pgmind_precision = "bf16 autocast" if has_native_bf16() else "fp32"

    texts = paragraphs(args.texts)
    batches = [texts[i:i + args.batch] for i in range(0, len(texts), args.batch)]
    log_dir = Path(tempfile.mkdtemp(prefix="bench-infinity-"))
    print(f"infinity logs: {log_dir}", file=sys.stderr)
    procs: list[subprocess.Popen] = []
    try:
        with Sandbox() as sb:
            pg_pid = int((Path(sb.settings.data_dir) / "postmaster.pid").read_text().split()[0])
            servers = [Server("pgmind", sb.settings.effective_server_url, "minilm", sb.server.pid,
                              {"Authorization": f"Bearer {sb.settings.server_token(create=False)}"}, pg_pid)]
            for dtype in dtypes:
                t0 = time.perf_counter()
                proc, url = start_infinity(args.venv, model_dir, dtype, log_dir, args.start_timeout)
                procs.append(proc)
                name = "infinity" if dtype == "auto" else f"infinity {dtype}"
                servers.append(Server(name, url, "minilm", proc.pid))
                print(f"{name} answered after {time.perf_counter() - t0:.0f} s", file=sys.stderr)

            # warm-up (pgmind loads its model on first use; both get connections, threads, allocator
            # warm) and the vectors compared: the first 100 texts, in requests of --batch
            first = texts[:100]
            vectors = {}
            for s in servers:
                with s.client() as http:
                    vectors[s.name] = [v for i in range(0, len(first), args.batch)
                                       for v in s.embed(http, first[i:i + args.batch])]
                run_clients(s, texts[:2 * args.clients], args.clients)
            cos = {s.name: cosines(vectors["pgmind"], vectors[s.name]) for s in servers[1:]}

            passes = {shape: {s.name: [] for s in servers} for shape in shapes}
            own_cpu = {s.name: 0.0 for s in servers}
            start_cpu = {s.name: s.cpu()[0] for s in servers}
            for r in range(args.rounds):
                order = servers[r % len(servers):] + servers[:r % len(servers)]
                for shape in shapes:
                    for s in order:
                        (c0, p0), w0, k0 = s.cpu(), time.perf_counter(), time.process_time()
                        if shape == "clients":
                            run_clients(s, texts, args.clients)
                        else:
                            run_batches(s, batches)
                        wall = time.perf_counter() - w0
                        (c1, p1), k1 = s.cpu(), time.process_time()
                        own_cpu[s.name] += c1 - c0
                        passes[shape][s.name].append({"s": wall, "texts_s": len(texts) / wall,
                                                      "server_cpu_s": c1 - c0, "pg_cpu_s": p1 - p0,
                                                      "client_cpu_s": k1 - k0})
                        print(f"round {r + 1} {shape:7} {s.name:18} {len(texts) / wall:7.1f} texts/s",
                              file=sys.stderr)
            idle_cpu = {s.name: s.cpu()[0] - start_cpu[s.name] - own_cpu[s.name] for s in servers}
    finally:
        for p in procs:
            stop(p)

    n = len(texts)
    med = {shape: {name: {k: statistics.median(p[k] for p in ps) for k in ps[0]}
                   for name, ps in by.items()} for shape, by in passes.items()}
    print(f"\n{cpu()}; all-MiniLM-L6-v2 ({model_dir}); {n} manual paragraphs, {args.rounds} interleaved "
          f"rounds (medians); pgmind {pgmind_precision}; infinity-emb {INFINITY_VERSION}, torch engine\n")
    print("| shape | server | texts/s | pgmind / this | server CPU ms per text | its PostgreSQL CPU ms per text "
          "| client CPU ms per text | cosine to pgmind (min, first 100) |")
    print("|---|---|---|---|---|---|---|---|")
    label = {"clients": f"{args.clients} clients × 1 text", "batch": f"1 client × {args.batch} texts"}
    out = {"bench": "infinity", "cpu": cpu(), "texts": n, "rounds": args.rounds, "clients": args.clients,
           "batch": args.batch, "pgmind_precision": pgmind_precision, "infinity": INFINITY_VERSION,
           "idle_cpu_s": {k: round(v, 2) for k, v in idle_cpu.items()},
           "cosine_min": {k: round(float(v.min()), 5) for k, v in cos.items()},
           "cosine_mean": {k: round(float(v.mean()), 5) for k, v in cos.items()}, "shapes": {}}
    for shape in shapes:
        base = med[shape]["pgmind"]["texts_s"]
        out["shapes"][shape] = {}
        for s in servers:
            m = med[shape][s.name]
            ratio = base / m["texts_s"]
            per_round = [a["texts_s"] / b["texts_s"] for a, b in zip(passes[shape]["pgmind"], passes[shape][s.name])]
            c = f"{cos[s.name].min():.5f}" if s.name in cos else "—"
            print(f"| {label[shape]} | {s.name} | {m['texts_s']:.1f} | **{ratio:.3f}** | "
                  f"{m['server_cpu_s'] / n * 1000:.2f} | {m['pg_cpu_s'] / n * 1000:.2f} | "
                  f"{m['client_cpu_s'] / n * 1000:.2f} | {c} |")
            out["shapes"][shape][s.name] = {
                "texts_s": round(m["texts_s"], 2), "pgmind_over_this": round(ratio, 4),
                "pgmind_over_this_per_round": [round(x, 4) for x in per_round],
                "texts_s_per_round": [round(p["texts_s"], 2) for p in passes[shape][s.name]],
                "server_cpu_s": round(m["server_cpu_s"], 3), "pg_cpu_s": round(m["pg_cpu_s"], 3),
                "client_cpu_s": round(m["client_cpu_s"], 3)}
    print("\nidle CPU (s, used while the other servers ran): "
          + ", ".join(f"{k} {v:.2f}" for k, v in idle_cpu.items()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
