"""Prometheus metrics of the model server (served on /metrics)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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
