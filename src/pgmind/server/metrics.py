"""Prometheus metrics of the model server (served on /metrics)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("pgmind_model_requests", "Model calls by model, operation and status",
                   ["model", "operation", "client", "status"], registry=REGISTRY)
LATENCY = Histogram("pgmind_model_latency_seconds", "Model call latency", ["model", "operation"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120),
                    registry=REGISTRY)
TOKENS = Counter("pgmind_model_tokens", "Tokens in and out", ["model", "direction"], registry=REGISTRY)
BATCH_SIZE = Histogram("pgmind_embedding_batch_size", "Texts per forward pass of a local embedding model",
                       ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=REGISTRY)
CALL_LOG_DROPPED = Counter("pgmind_call_log_dropped", "Call-log records that could not be written",
                           registry=REGISTRY)

# Vectorizer queues, read from ai.vectorizer_status at each scrape (see app.py).
VECTORIZER = {
    name: Gauge(f"pgmind_vectorizer_{name}", doc, ["vectorizer", "version"], registry=REGISTRY)
    for name, doc in (("pending", "Queued source rows waiting for a worker"),
                      ("leased", "Source rows leased to a worker now"),
                      ("errors", "Quarantined rows"),
                      ("lag_seconds", "Age of the oldest queued row"),
                      ("rows_per_second", "Rows embedded per second over the last minute"))
}
VECTORIZER_QUERY = """select name, version, pending, leased, errors, coalesce(extract(epoch from lag), 0),
                             rows_per_second from ai.vectorizer_status"""


def set_vectorizer_gauges(rows) -> None:
    for g in VECTORIZER.values():
        g.clear()
    for name, version, pending, leased, errors, lag, rate in rows:
        labels = (name, str(version))
        VECTORIZER["pending"].labels(*labels).set(pending)
        VECTORIZER["leased"].labels(*labels).set(leased)
        VECTORIZER["errors"].labels(*labels).set(errors)
        VECTORIZER["lag_seconds"].labels(*labels).set(float(lag))
        VECTORIZER["rows_per_second"].labels(*labels).set(float(rate))
