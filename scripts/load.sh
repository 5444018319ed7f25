#!/usr/bin/env bash
# Load test of the whole local system: builds release binaries, starts every service with its
# sidecar (dapr.yaml with release binaries, quieter logs, and the email-worker sending over SMTP
# to the load generator's sink), creates tasks for a bounded time, then stops everything.
#
#   scripts/load.sh                                 30 s at 16 requests in flight
#   scripts/load.sh --duration 20s --concurrency 16
#   scripts/load.sh --duration 20s --rate 200       fixed rate (at most --concurrency in flight)
#   scripts/load.sh --scale email-worker=2 --scale audit-logger=2
#                                                   instances per app (sidecar run --scale); the
#                                                   result adds each instance's share of the work
#   scripts/load.sh --kafka --duration 20s          on dapr.kafka.yaml: production's Kafka pub/sub
#                                                   component and Redis state (brokers started as
#                                                   scripts/run-local.sh --kafka starts them;
#                                                   KAFKA_BROKERS and KAFKA_AUTH_TYPE, KAFKA_SASL_*
#                                                   as there)
#
# --scale goes to the runner, --kafka picks the run file, every other argument goes to loadgen
# (target/release/loadgen --help). Writes docs/load/result.json and docs/load/latency.svg
# (docs/load/kafka/ with --kafka). Environment: SMTP_PORT (sink port, default 2525), PORT_OFFSET
# (added to every appPort and daprHTTPPort of the run file, default 0: a run beside another
# system on this machine), USERS (tasks
# are spread over this many users, default 16), OUT_DIR, PROFILE (release or debug binaries,
# default release), NO_BUILD=1 (run the binaries already built). Traffic stays on 127.0.0.1.
# Needs the Rust toolchain (and, with --kafka, what scripts/lib/require.sh installs:
# redis-server, tansu).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/local-brokers.sh

case "${1:-}" in -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

kafka=false
scale=()   # for the runner, which checks the app names and counts
loadgen=() # everything else
while [ $# -gt 0 ]; do
  case "$1" in
    --kafka) kafka=true ;;
    --scale)
      [ $# -ge 2 ] || { echo "error: --scale needs APP=N" >&2; exit 2; }
      scale+=(--scale "$2"); shift ;;
    --scale=*) scale+=(--scale "${1#--scale=}") ;;
    *) loadgen+=("$1") ;;
  esac
  shift
done

SMTP_PORT=${SMTP_PORT:-2525}
USERS=${USERS:-16}
if $kafka; then
  OUT_DIR=${OUT_DIR:-docs/load/kafka}
else
  OUT_DIR=${OUT_DIR:-docs/load}
fi
PROFILE=${PROFILE:-release}
case "$PROFILE" in release|debug) ;; *) echo "error: PROFILE must be release or debug" >&2; exit 2 ;; esac
BIN=target/$PROFILE
case "$USERS" in ''|*[!0-9]*) echo "error: USERS must be a number" >&2; exit 2 ;; esac
[ "$USERS" -ge 1 ] && [ "$USERS" -le 1000 ] || { echo "error: USERS must be 1..1000" >&2; exit 2; }
BASE_RUN_FILE=dapr.yaml
$kafka && BASE_RUN_FILE=dapr.kafka.yaml
RUN_FILE=.load-run.yaml # beside dapr.yaml: its relative paths stay valid

port_open() { { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && exec 3<&-; }

http_status() {
  local reply
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  IFS=' ' read -r -t 5 _ reply _ <&3 || reply=
  exec 3<&-
  printf '%s' "$reply"
}

setting() { sed -n "s/^[[:space:]]*$1:[[:space:]]*//p" "$BASE_RUN_FILE" | head -n 1 | tr -d '"'; }

PORT_OFFSET=${PORT_OFFSET:-0}
case "$PORT_OFFSET" in ''|*[!0-9]*) echo "error: PORT_OFFSET must be a number" >&2; exit 2 ;; esac
[ "$PORT_OFFSET" -le 40000 ] || { echo "error: PORT_OFFSET must be 0..40000" >&2; exit 2; }
# The run file's appPort and daprHTTPPort lines, each moved up by PORT_OFFSET.
shift_ports() {
  awk -v offset="$PORT_OFFSET" '/^[[:space:]]*(appPort|daprHTTPPort):[[:space:]]*[0-9]+/ {
      match($0, /[0-9]+/)
      $0 = substr($0, 1, RSTART - 1) (substr($0, RSTART, RLENGTH) + offset) substr($0, RSTART + RLENGTH)
    } { print }'
}
mapfile -t app_ports < <(shift_ports <"$BASE_RUN_FILE" | sed -n 's/^[[:space:]]*appPort:[[:space:]]*//p')
mapfile -t dapr_ports < <(shift_ports <"$BASE_RUN_FILE" | sed -n 's/^[[:space:]]*daprHTTPPort:[[:space:]]*//p')
for port in "${app_ports[@]}" "${dapr_ports[@]}" "$SMTP_PORT"; do
  if port_open "$port"; then
    echo "error: port $port is already in use; is another run still going?" >&2
    exit 1
  fi
done

if [ "${NO_BUILD:-0}" != 1 ]; then
  # The sidecar links librdkafka, built from source (cmake, C headers; see scripts/lib/require.sh).
  source scripts/lib/require.sh
  require_kafka_build_tools
fi
if [ "${NO_BUILD:-0}" = 1 ]; then
  echo "==> Using the $PROFILE binaries as they are (NO_BUILD=1)"
elif [ "$PROFILE" = release ]; then
  echo "==> Building release binaries (cargo build --release --bins)..."
  cargo build --release --bins
else
  echo "==> Building debug binaries (cargo build --bins): figures are not comparable with release"
  cargo build --bins
fi

# The run file: dapr.yaml with $PROFILE binaries, warn-level logs (a log line per request would
# be measured too), and SMTP to the sink instead of .eml files.
sed -e "s#target/debug/#$BIN/#" \
    -e 's#^\([[:space:]]*\)RUST_LOG: .*#\1RUST_LOG: warn#' \
    -e "s#^\([[:space:]]*\)MAIL_DIR: .*#\1SMTP_URL: smtp://127.0.0.1:${SMTP_PORT}#" \
    "$BASE_RUN_FILE" | shift_ports >"$RUN_FILE"
grep -q "SMTP_URL: smtp://127.0.0.1:${SMTP_PORT}" "$RUN_FILE" || {
  echo "error: could not point the email-worker at the sink (no MAIL_DIR in $BASE_RUN_FILE)" >&2
  exit 1
}

runner=
cleanup() {
  local status=$?
  if [ -n "$runner" ] && kill -0 "$runner" 2>/dev/null; then
    echo "==> Stopping the system" >&2
    kill -INT "$runner" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$runner" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$runner" 2>/dev/null; then
      echo "warning: runner still alive after 30 s; killing its process group" >&2
      kill -KILL -- "-$runner" 2>/dev/null || true
    fi
    wait "$runner" 2>/dev/null || true
  fi
  rm -f "$RUN_FILE"
  stop_local_brokers
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if $kafka; then
  start_local_redis
  start_local_kafka
fi

mkdir -p .local/load
echo "==> Starting the system (log: .local/load/system.log)"
set -m # own process group, so the whole run can be stopped together
# No console: it would switch tracing on in every service and sidecar (it is the run's trace
# receiver), and its rings would count in the runner's memory; the figures measure the system.
"$BIN/sidecar" run -f "$RUN_FILE" --no-console "${scale[@]}" >.local/load/system.log 2>&1 &
runner=$!
set +m

ready=false
for _ in $(seq 600); do
  kill -0 "$runner" 2>/dev/null || break
  all=true
  for port in "${dapr_ports[@]}"; do
    [ "$(http_status "$port" /v1.0/healthz)" = 204 ] || { all=false; break; }
  done
  for port in "${app_ports[@]}"; do
    case "$(http_status "$port" /readyz)" in 200|204) ;; *) all=false ;; esac
  done
  if $all; then ready=true; break; fi
  sleep 0.1
done
$ready || { echo "error: the system did not become ready in 60 s; see .local/load/system.log" >&2; exit 1; }

# Every instance, from the runner's table ("APP  APP PORT  DAPR HTTP PORT ...", printed once all
# have started): "label app-port" per line.
instances() {
  awk '/^APP .*DAPR HTTP PORT/ { table = 1; next }
       table && NF == 6 && $3 ~ /^[0-9]+$/ { print $1, $2; next }
       table { exit }' .local/load/system.log
}
task_api_urls=()
if [ ${#scale[@]} -gt 0 ]; then
  ready=false
  for _ in $(seq 600); do
    kill -0 "$runner" 2>/dev/null || break
    mapfile -t rows < <(instances)
    all=$([ ${#rows[@]} -gt 0 ] && echo true || echo false)
    for row in "${rows[@]}"; do
      read -r label port <<<"$row"
      [ "$port" = - ] && continue
      case "$(http_status "$port" /readyz)" in 200|204) ;; *) all=false ;; esac
    done
    if $all; then ready=true; break; fi
    sleep 0.1
  done
  $ready || { echo "error: not every instance became ready in 60 s; see .local/load/system.log" >&2; exit 1; }
  for row in "${rows[@]}"; do
    read -r label port <<<"$row"
    case "$label" in task-api|task-api\#*) task_api_urls+=("http://127.0.0.1:$port") ;; esac
  done
  echo "==> Instances: ${rows[*]}"
else
  task_api_urls=("http://127.0.0.1:${app_ports[0]}")
fi

tokens=()
for _ in $(seq "$USERS"); do
  user_id=$(cat /proc/sys/kernel/random/uuid)
  tokens+=("$(JWT_SECRET=$(setting JWT_SECRET) "$BIN/task-api" token \
    --user-id "$user_id" --email "load-${user_id:0:8}@example.com" --ttl 1h)")
done
token=$(IFS=,; echo "${tokens[*]}")

echo "==> Running loadgen ${loadgen[*]}"
LOADGEN_TOKEN=$token "$BIN/loadgen" \
  --url "$(IFS=,; echo "${task_api_urls[*]}")" \
  --smtp-listen "127.0.0.1:${SMTP_PORT}" \
  --process-dir "$BIN" \
  --run-log .local/load/system.log \
  --out "$OUT_DIR/result.json" --plot "$OUT_DIR/latency.svg" \
  "${loadgen[@]}"
