#!/usr/bin/env bash
# The throughput table (issue 18) in one run, rows in a fixed order, each row on a fresh system,
# every HTTP row driven by the same client (loadgen) with the same settings:
#
#   create     task-api POST /api/tasks through `sidecar run -f`, 32 users round robin, 32 connections
#   one-user   the same, one user alone
#   half-peak  the same (32 users) open loop at half of create's req/s (latency from the schedule;
#              create runs first when it is not selected)
#   fastapi    the seed-shaped FastAPI service (benches/fastapi, 2 uvicorn workers), same sidecar
#   probe      the two-hop limit: an axum handler making two POSTs to a server that answers at once
#   sidecar    the sidecar alone, state GET of one key, 8 connections
#   system     scripts/load.sh --concurrency 16 (60 s), then open loop at half of its creates/s
#   kafka      the same with --kafka
#
#   scripts/bench-table.sh                          every row (5-15 minutes: the system rows wait for their backlog)
#   scripts/bench-table.sh --only create,one-user,fastapi,probe
#   scripts/bench-table.sh --quick --only create,probe,sidecar      a smoke run of a few seconds a row
#   scripts/bench-table.sh --out after.json --compare before.json  the table, then after ÷ before
#   scripts/bench-table.sh --render after.json [--compare before.json]   print only, run nothing
#
# Prints the Markdown table with the ratios the goals name (one user ÷ 32 users, task-api ÷ FastAPI,
# task-api ÷ two-hop limit, p99 at half of peak, emails/s and audit entries/s ÷ creates/s,
# request→email p99 at half rate), writes the summary as JSON (--out, default
# .local/bench/table.json) and the Markdown beside it (.md); each row's loadgen result stays in
# .local/bench/<time>/. Environment: PROFILE (release or debug, default release), NO_BUILD=1 (use
# the binaries already built), BIN_DIR (where they are, default target/$PROFILE), BENCH_PORT_BASE
# (first of the two loopback ports of a row, default 18400), BENCH_SYSTEM_PORT_OFFSET (added to
# dapr.yaml's ports and the SMTP sink's 2525 for the whole-system rows, default 10000). fastapi makes the virtualenv scripts/bench-fastapi.sh makes (python3, PyPI). Traffic
# stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_ROWS=(create one-user half-peak fastapi probe sidecar system kafka)
die() { echo "error: $*" >&2; exit 2; }

only=
quick=false
out=.local/bench/table.json
compare=
render=
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    --only) [ $# -ge 2 ] || die "--only needs a comma-separated list of rows (${ALL_ROWS[*]})"
            only=$2; shift ;;
    --only=*) only=${1#--only=} ;;
    --quick) quick=true ;;
    --out) [ $# -ge 2 ] || die "--out needs a file"; out=$2; shift ;;
    --out=*) out=${1#--out=} ;;
    --compare) [ $# -ge 2 ] || die "--compare needs a summary file of an earlier run"; compare=$2; shift ;;
    --compare=*) compare=${1#--compare=} ;;
    --render) [ $# -ge 2 ] || die "--render needs a summary file"; render=$2; shift ;;
    --render=*) render=${1#--render=} ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
case "$out" in *.json) ;; *) die "--out must name a .json file (the Markdown goes beside it)" ;; esac
[ -z "$compare" ] || [ -f "$compare" ] || die "--compare $compare: no such file"
command -v python3 >/dev/null 2>&1 || die "python3 is required (apt-get install python3)"
TABLE=scripts/lib/bench_table.py

if [ -n "$render" ]; then
  [ -f "$render" ] || die "--render $render: no such file"
  exec python3 "$TABLE" render "$render" ${compare:+--compare "$compare"}
fi

# The rows to run, in the fixed order whatever the order given.
declare -A wanted=()
if [ -z "$only" ]; then
  for row in "${ALL_ROWS[@]}"; do wanted[$row]=1; done
else
  IFS=, read -r -a asked <<<"$only"
  [ ${#asked[@]} -gt 0 ] || die "--only: no row given (${ALL_ROWS[*]})"
  for row in "${asked[@]}"; do
    known=false
    for candidate in "${ALL_ROWS[@]}"; do [ "$row" = "$candidate" ] && known=true; done
    $known || die "--only: unknown row '$row' (rows: ${ALL_ROWS[*]})"
    wanted[$row]=1
  done
fi
if [ -n "${wanted[half-peak]:-}" ] && [ -z "${wanted[create]:-}" ]; then
  echo "note: half-peak needs the 32-user peak, so create runs too" >&2
  wanted[create]=1
fi
selected=()
for row in "${ALL_ROWS[@]}"; do [ -n "${wanted[$row]:-}" ] && selected+=("$row"); done

if $quick; then
  DURATION=2s WARMUP=1s SYSTEM_DURATION=5s SYSTEM_HALF_DURATION=3s SYSTEM_DRAIN=20s
else
  DURATION=10s WARMUP=2s SYSTEM_DURATION=60s SYSTEM_HALF_DURATION=30s SYSTEM_DRAIN=180s
fi
USERS=32
CONNECTIONS=32
PROFILE=${PROFILE:-release}
case "$PROFILE" in release|debug) ;; *) die "PROFILE must be release or debug" ;; esac
BIN=${BIN_DIR:-target/$PROFILE}
PORT_BASE=${BENCH_PORT_BASE:-18400}
case "$PORT_BASE" in ''|*[!0-9]*) die "BENCH_PORT_BASE must be a port number" ;; esac
[ "$PORT_BASE" -ge 1024 ] && [ "$PORT_BASE" -le 65000 ] || die "BENCH_PORT_BASE must be 1024..65000"
# The whole-system rows run dapr.yaml's ports moved up by this much (scripts/load.sh PORT_OFFSET).
SYSTEM_PORT_OFFSET=${BENCH_SYSTEM_PORT_OFFSET:-10000}
case "$SYSTEM_PORT_OFFSET" in ''|*[!0-9]*) die "BENCH_SYSTEM_PORT_OFFSET must be a number" ;; esac
APP_PORT=$PORT_BASE
DAPR_PORT=$((PORT_BASE + 1))
# DEV ONLY: the key of the bench's own tokens; nothing outside this run sees it.
JWT_SECRET=bench-only-jwt-secret-0123456789-abcdefghijklmnop
RUN_FILE=.bench-run.$$.yaml # beside dapr.yaml, so the same relative paths hold
RUN_DIR=.local/bench/$(date -u +%Y%m%dT%H%M%SZ).$$
mkdir -p "$RUN_DIR"

source scripts/lib/bench-run.sh

if [ "${NO_BUILD:-0}" != 1 ]; then
  # The sidecar links librdkafka, built from source (cmake, C headers; see scripts/lib/require.sh).
  source scripts/lib/require.sh
  require_kafka_build_tools >&2
fi
if [ "${NO_BUILD:-0}" = 1 ]; then
  echo "==> Using the $PROFILE binaries as they are (NO_BUILD=1)" >&2
elif [ "$PROFILE" = release ]; then
  echo "==> Building release binaries (cargo build --release --bins)..." >&2
  cargo build --release --bins >&2
else
  echo "==> Building debug binaries (cargo build --bins): figures are not comparable with release" >&2
  cargo build --bins >&2
fi
for binary in sidecar task-api loadgen two-hop-probe; do
  [ -x "$BIN/$binary" ] || die "$BIN/$binary is missing (build it, or drop NO_BUILD=1)"
done
if [ -n "${wanted[fastapi]:-}" ]; then
  source scripts/lib/bench-venv.sh
  require_bench_venv
fi

trap cleanup EXIT
trap 'exit 130' INT TERM

tokens=()
for _ in $(seq "$USERS"); do
  user_id=$(cat /proc/sys/kernel/random/uuid)
  tokens+=("$(JWT_SECRET=$JWT_SECRET "$BIN/task-api" token --user-id "$user_id" \
    --email "bench-${user_id:0:8}@example.com" --ttl 2h)")
done
all_users=$(IFS=,; echo "${tokens[*]}")
one_user=${tokens[0]}

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for row in "${selected[@]}"; do
  echo "==> $row" >&2
  case "$row" in
    create)
      start_runner task-api
      drive create "$all_users" --concurrency "$CONNECTIONS"
      stop_runner ;;
    one-user)
      start_runner task-api
      drive one-user "$one_user" --concurrency "$CONNECTIONS"
      stop_runner ;;
    half-peak)
      rate=$(python3 "$TABLE" half "$RUN_DIR/create.json")
      start_runner task-api
      # Open loop, warm-up at the same rate: the in-flight cap is only a guard, and a request
      # waiting for it counts as late.
      drive half-peak "$all_users" --rate "$rate" --concurrency 1024
      stop_runner ;;
    fastapi)
      start_runner fastapi
      drive fastapi "$all_users" --concurrency "$CONNECTIONS"
      stop_runner ;;
    probe)
      start_probe
      drive probe "$all_users" --concurrency "$CONNECTIONS"
      stop_probe ;;
    sidecar)
      start_runner sidecar
      save_state_key
      drive sidecar "" --concurrency 8 \
        --get "http://127.0.0.1:$DAPR_PORT/v1.0/state/todo-state/bench"
      stop_runner ;;
    system) whole_system system ;;
    kafka) whole_system kafka --kafka ;;
  esac
done

mkdir -p "$(dirname "$out")"
python3 "$TABLE" collect "$RUN_DIR" \
  "at=$started" "commit=$commit" "profile=$PROFILE" "quick=$quick" "cores=$(nproc)" \
  "load average before=$load_before" "load average after=$(cut -d' ' -f1-3 /proc/loadavg)" \
  >"$out"
python3 "$TABLE" render "$out" ${compare:+--compare "$compare"} | tee "${out%.json}.md"
echo "==> Summary: $out (Markdown: ${out%.json}.md; each row's loadgen result: $RUN_DIR)" >&2
