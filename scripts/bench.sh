#!/usr/bin/env bash
# Runs every benchmark in bench/ (each starts its own cluster and model server) and prints the
# markdown tables that go into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
for b in bench/bench_*.py; do
    echo "## $b"
    .venv/bin/python "$b"
done
