#!/usr/bin/env bash
# task-api's create benchmark with the Python baseline beside it: POST /api/tasks at a fixed
# concurrency against task-api, a bare axum handler and a FastAPI service (2 uvicorn workers),
# each on its own in-memory sidecar on this machine, all driven by the same client.
#
#   scripts/bench-fastapi.sh                      4,000 requests at 32 in flight
#   BENCH_REQUESTS=8000 BENCH_CONCURRENCY=16 scripts/bench-fastapi.sh
#
# Creates a virtualenv in .local/bench-venv with crates/task-api/benches/fastapi/requirements.txt
# (needs python3 with venv and access to PyPI). Prints requests/s and p50/p99 for each.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

source scripts/lib/bench-venv.sh
require_bench_venv
BENCH_FASTAPI_PYTHON="$BENCH_PYTHON" exec cargo bench -p task-api --bench create_task
