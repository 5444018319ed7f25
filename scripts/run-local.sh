#!/usr/bin/env bash
# Runs the whole system on this machine: every service with its own Dapr-compatible sidecar, as
# described by the multi-app run file dapr.yaml (in-memory pub/sub and state, emails as .eml files
# in .local/mail). Needs the Rust toolchain; installs Debian's cmake and the C headers librdkafka's
# build needs when they are missing (as root), otherwise names them. Ctrl-C stops everything.
#
#   scripts/run-local.sh            dapr.yaml: in-memory components, nothing kept between runs
#   scripts/run-local.sh --redis    dapr.redis.yaml: Redis Streams + Redis state on localhost:6379;
#                                   starts a redis-server there (data in .local/redis) if none answers
#   scripts/run-local.sh --kafka    dapr.kafka.yaml: production's Kafka pub/sub component + Redis
#                                   state; the broker is KAFKA_BROKERS, else a tansu started on
#                                   127.0.0.1:9092 (in memory); topics from deploy/redpanda/topics.conf;
#                                   auth from KAFKA_AUTH_TYPE (none, or password with
#                                   KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SASL_MECHANISM
#                                   SHA-256/SHA-512, KAFKA_DISABLE_TLS, KAFKA_CA_CERT_FILE)
#   scripts/run-local.sh --otlp http://127.0.0.1:4318
#                                   also exports every trace (services and sidecars, all sampled)
#                                   to that OTLP/HTTP receiver, e.g. Jaeger all-in-one; combines
#                                   with --redis or --kafka
#   scripts/run-local.sh --scale email-worker=3 --scale task-api=2
#                                   that many instances of an app (repeatable; with any file):
#                                   each with its own sidecar and ports, the same app id; the
#                                   runner's table lists every instance and its ports
#
# Then, in another terminal: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }

run_file=dapr.yaml
redis=false
kafka=false
otlp=
scale=() # passed on to the runner, which checks the app names and counts
while [ $# -gt 0 ]; do
  case "$1" in
    --redis) redis=true; run_file=dapr.redis.yaml ;;
    --kafka) redis=true; kafka=true; run_file=dapr.kafka.yaml ;;
    --otlp)
      [ $# -ge 2 ] || { echo "error: --otlp needs a URL (http://host:port)" >&2; exit 2; }
      otlp=$2; shift ;;
    --otlp=*) otlp=${1#--otlp=} ;;
    --scale)
      [ $# -ge 2 ] || { echo "error: --scale needs APP=N" >&2; usage >&2; exit 2; }
      scale+=(--scale "$2"); shift ;;
    --scale=*) scale+=(--scale "${1#--scale=}") ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$otlp" ] && ! [[ $otlp =~ ^https?://[^/[:space:]]+:[0-9]+/?$ ]]; then
  echo "error: --otlp $otlp is not an http(s)://host:port URL (the OTLP/HTTP receiver's base URL)" >&2
  exit 2
fi

# HTTP status of GET http://127.0.0.1:$1$2, using bash's /dev/tcp so curl is not required.
http_status() {
  local reply
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  IFS=' ' read -r -t 5 _ reply _ <&3 || reply=
  exec 3<&-
  printf '%s' "$reply"
}

port_open() { { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && exec 3<&-; }

# "app-id app-port dapr-http-port" per app of the run file, in file order.
apps_of() {
  awk '
    /^[[:space:]]*- appID:/ { if (id != "") print id, app, dapr; id = $3; app = "-"; dapr = "-" }
    /^[[:space:]]*appPort:/ { app = $2 }
    /^[[:space:]]*daprHTTPPort:/ { dapr = $2 }
    END { if (id != "") print id, app, dapr }
  ' "$1"
}

command -v cargo >/dev/null 2>&1 || {
  echo "error: cargo not found; install the Rust toolchain from https://rustup.rs" >&2
  exit 1
}

mapfile -t apps < <(apps_of "$run_file")
for line in "${apps[@]}"; do
  read -r id app_port dapr_port <<<"$line"
  for port in "$app_port" "$dapr_port"; do
    if [ "$port" != - ] && port_open "$port"; then
      echo "error: port $port ($id) is already in use; is another run still going?" >&2
      exit 1
    fi
  done
done

# The sidecar links librdkafka (its Kafka component, whatever the run file), built from source:
# without cmake and the C headers it needs, the build fails deep inside a build script.
source scripts/lib/require.sh
require_kafka_build_tools
echo "==> Building every binary of the workspace (cargo build --workspace --bins)..."
cargo build --workspace --bins

source scripts/lib/local-brokers.sh
if $redis; then
  start_local_redis
fi
if $kafka; then
  start_local_kafka
fi

mkdir -p .local/mail

if [ -n "$otlp" ]; then
  # The services read the standard OpenTelemetry variables (the runner passes its environment on
  # to the apps); the sidecars read spec.tracing of their Configuration, so the run uses a copy
  # of the shipped one with its tracing pointed at the receiver, and a copy of the run file
  # (in .local/, its relative paths one level up) naming that copy.
  address=${otlp#*://}; address=${address%/}
  secure=false; [[ $otlp == https://* ]] && secure=true
  export OTEL_EXPORTER_OTLP_ENDPOINT=${otlp%/}
  export OTEL_TRACES_SAMPLER=parentbased_always_on
  awk -v address="$address" -v secure="$secure" '
    /^  tracing:/ { print; print "    samplingRate: \"1\""; print "    otel:";
                    print "      endpointAddress: \"" address "\"";
                    print "      isSecure: " secure; print "      protocol: http";
                    skip = 1; next }
    skip && /^    / { next }
    { skip = 0; print }
  ' deploy/dapr/configuration.yaml >.local/configuration.otlp.yaml
  sed -e 's#appDirPath: \.$#appDirPath: ..#' -e 's#\./deploy/#../deploy/#g' \
    -e 's#configFilePath: .*#configFilePath: ./configuration.otlp.yaml#' \
    "$run_file" >".local/${run_file%.yaml}.otlp.yaml"
  run_file=".local/${run_file%.yaml}.otlp.yaml"
  echo "==> Exporting traces to $otlp (services: OTEL_EXPORTER_OTLP_ENDPOINT; sidecars: $run_file)"
fi

# The runner gets its own process group (job control on), so a Ctrl-C in the terminal reaches only
# this script, which passes exactly one SIGINT on: a second one would make the runner kill the apps
# without their graceful shutdown.
set -m
target/debug/sidecar run -f "$run_file" "${scale[@]}" &
runner=$!
set +m

signals=0
stop() {
  signals=$((signals + 1))
  if [ "$signals" = 1 ]; then
    echo "==> Stopping: every app gets SIGTERM and a grace period, then the sidecars stop" >&2
  else
    echo "==> Second signal: the runner kills the apps now" >&2
  fi
  kill -INT "$runner" 2>/dev/null || true
}
trap stop INT TERM

ready=false
for _ in $(seq 600); do
  [ "$signals" = 0 ] && kill -0 "$runner" 2>/dev/null || break
  all=true
  for line in "${apps[@]}"; do
    read -r id app_port dapr_port <<<"$line"
    [ "$(http_status "$dapr_port" /v1.0/healthz)" = 204 ] || { all=false; break; }
  done
  if $all; then ready=true; break; fi
  sleep 0.1 || true # a Ctrl-C interrupts the sleep too
done

if ! $ready && [ "$signals" = 0 ] && kill -0 "$runner" 2>/dev/null; then
  echo "warning: the sidecars did not all report healthy within 60 s; see the log above" >&2
elif $ready; then
  {
    echo
    echo "==> Running ($run_file). Ctrl-C stops everything."
    printf '    %-20s %-24s %s\n' "app" "app (APP_PORT)" "Dapr sidecar HTTP API"
    for line in "${apps[@]}"; do
      read -r id app_port dapr_port <<<"$line"
      printf '    %-20s %-24s %s\n' "$id" "http://127.0.0.1:$app_port" "http://127.0.0.1:$dapr_port"
    done
    [ ${#scale[@]} -eq 0 ] || echo "    (first instances; the runner's table above lists every instance)"
    echo "    REST API:  http://127.0.0.1:8080/api/tasks  (OpenAPI at /openapi.json)"
    echo "    Emails:    $PWD/.local/mail (one .eml file per email)"
    echo "    Try it:    scripts/demo.sh"
    echo
  } >&2
fi

# `wait` returns early when a trapped signal arrives; keep waiting until the runner has exited.
while :; do
  status=0
  wait "$runner" || status=$?
  kill -0 "$runner" 2>/dev/null || break
done
stop_local_brokers
exit "$status"
