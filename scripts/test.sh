#!/usr/bin/env bash
# The project's test command: every crate's unit, integration and end-to-end tests.
# Integration tests start real processes (the local sidecar, the services, redis-server, a tansu
# Kafka broker, SMTP servers) on random loopback ports; nothing outside this machine is touched.
# On a fresh machine this installs redis-server, cmake (librdkafka's build) and builds tansu once
# into ~/.cache (see scripts/lib/require.sh). task-api's OpenAPI conformance test runs
# schemathesis, which scripts/install-schemathesis.sh installs into .local/ on first use (python3
# with venv and PyPI; the test is skipped only without python3). The console's browser tests
# (crates/e2e/browser) need Node.js, Debian's chromium and the folder's npm packages: installed
# here when missing (as root), otherwise named.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/require.sh
require_redis_server
require_kafka_build_tools
require_tansu
require_browser_tests

# The end-to-end tests (crates/e2e) run the real binaries, which `cargo test` does not build.
echo "Building every binary of the workspace (cargo build --workspace --bins)..." >&2
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
