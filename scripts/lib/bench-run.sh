# The moving parts of scripts/bench-table.sh: a run file per row, the runner that hosts it, the
# two-hop probe, loadgen with the same settings for every HTTP row, and the whole-system rows
# through scripts/load.sh. Sourced, not run: expects BIN, APP_PORT, DAPR_PORT, JWT_SECRET,
# RUN_FILE, RUN_DIR, DURATION, WARMUP, SYSTEM_*, TABLE and PROFILE from the caller.

runner=
probe=

port_open() { { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && exec 3<&-; }

http_status() {
  local reply
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  IFS=' ' read -r -t 5 _ reply _ <&3 || reply=
  exec 3<&-
  printf '%s' "$reply"
}

ports_free() {
  local port
  for port in "$@"; do
    if port_open "$port"; then
      echo "error: port $port is in use; set BENCH_PORT_BASE to a free pair of ports" >&2
      exit 1
    fi
  done
}

# Polls until every "PORT PATH" answers 200 or 204; gives up after READY_TRIES tenths of a second
# (default 600) or when $1 (a pid) exits.
wait_ready() {
  local pid=$1 log=$2 check port path all
  shift 2
  for _ in $(seq "${READY_TRIES:-600}"); do
    kill -0 "$pid" 2>/dev/null || break
    all=true
    for check in "$@"; do
      read -r port path <<<"$check"
      case "$(http_status "$port" "$path")" in 200|204) ;; *) all=false ;; esac
    done
    $all && return 0
    sleep 0.1
  done
  echo "error: not ready in $(( ${READY_TRIES:-600} / 10 )) s ($*); see $log" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
}

# The run file of a row: one app with app id task-api (the components are scoped to it), so
# task-api, the FastAPI service and the lone sidecar all get the same sidecar and components.
write_run_file() {
  local command=$1 env=$2
  cat >"$RUN_FILE" <<EOF
# Written by scripts/bench-table.sh for one row; removed when it ends.
version: 1
name: bench
common:
  resourcesPaths: [./deploy/local/in-memory]
  configFilePath: ./deploy/dapr/configuration.yaml
  apiListenAddresses: 127.0.0.1
  env:
    APP_HOST: 127.0.0.1
    RUST_LOG: warn
    PUBSUB_NAME: todo-pubsub
    STATE_STORE_NAME: todo-state
apps:
  - appID: task-api
    appDirPath: .
    appPort: $APP_PORT
    daprHTTPPort: $DAPR_PORT
$command
    env:
      JWT_SECRET: $JWT_SECRET
      # One user alone makes ~30,000 creates in a row; the default cap of open tasks per user
      # (10,000) would answer most of them 409.
      MAX_OPEN_TASKS_PER_USER: "100000000"
$env
EOF
}

# Starts `sidecar run -f` for a row: task-api, fastapi or sidecar (no app).
start_runner() {
  local what=$1 ready=("$DAPR_PORT /v1.0/healthz")
  ports_free "$APP_PORT" "$DAPR_PORT"
  case "$what" in
    task-api)
      write_run_file "    command: [\"$BIN/task-api\"]" ""
      ready+=("$APP_PORT /readyz") ;;
    fastapi)
      write_run_file "    command: [\"$BENCH_PYTHON\", \"-m\", \"uvicorn\", \"app:app\", \"--workers\", \"2\", \"--log-level\", \"warning\", \"--host\", \"127.0.0.1\", \"--port\", \"$APP_PORT\", \"--app-dir\", \"crates/task-api/benches/fastapi\"]" \
        "      DAPR_HTTP_ENDPOINT: http://127.0.0.1:$DAPR_PORT"
      ready+=("$APP_PORT /healthz") ;;
    sidecar)
      write_run_file "" ""
      # No app: the app port stays closed, and the sidecar serves its API without one.
      sed -i '/^    appPort:/d' "$RUN_FILE" ;;
  esac
  set -m # its own process group, so the whole row can be stopped together
  "$BIN/sidecar" run -f "$RUN_FILE" --no-console >"$RUN_DIR/$what.runner.log" 2>&1 &
  runner=$!
  set +m
  wait_ready "$runner" "$RUN_DIR/$what.runner.log" "${ready[@]}"
}

stop_runner() {
  [ -n "$runner" ] || return 0
  if kill -0 "$runner" 2>/dev/null; then
    kill -INT "$runner" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$runner" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$runner" 2>/dev/null; then
      echo "warning: runner still alive after 30 s; killing its process group" >&2
      kill -KILL -- "-$runner" 2>/dev/null || true
    fi
  fi
  wait "$runner" 2>/dev/null || true
  runner=
  rm -f "$RUN_FILE"
}

start_probe() {
  ports_free "$APP_PORT"
  set -m
  "$BIN/two-hop-probe" --listen "127.0.0.1:$APP_PORT" >"$RUN_DIR/probe.log" 2>&1 &
  probe=$!
  set +m
  wait_ready "$probe" "$RUN_DIR/probe.log" "$APP_PORT /healthz"
}

stop_probe() {
  [ -n "$probe" ] || return 0
  kill -INT "$probe" 2>/dev/null || true
  wait "$probe" 2>/dev/null || true
  probe=
}

# One key of a task's size for the state GET row.
save_state_key() {
  python3 - "$DAPR_PORT" <<'EOF'
import json, sys, urllib.request
body = json.dumps([{"key": "bench", "value": {
    "title": "Write the quarterly report", "description": "x" * 200, "priority": "high",
    "completed": False, "created_at": "2026-01-01T00:00:00Z"}}]).encode()
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/v1.0/state/todo-state", data=body,
    headers={"content-type": "application/json"})
with urllib.request.urlopen(request, timeout=10) as response:
    if response.status != 204:
        sys.exit(f"saving the bench key answered {response.status}")
EOF
}

# loadgen for one measurement: NAME DURATION TOKENS ARGS... (TOKENS empty for --get).
loadgen_run() {
  local name=$1 duration=$2 tokens=$3 status=0
  shift 3
  rm -f "$RUN_DIR/$name.json"
  (
    if [ -n "$tokens" ]; then export LOADGEN_TOKEN=$tokens; fi
    exec "$BIN/loadgen" --http-only --url "http://127.0.0.1:$APP_PORT" --duration "$duration" \
      --drain 0s --process-dir "$BIN" \
      --out "$RUN_DIR/$name.json" --plot "$RUN_DIR/$name.svg" "$@"
  ) >"$RUN_DIR/$name.log" 2>&1 || status=$?
  if [ ! -f "$RUN_DIR/$name.json" ]; then
    echo "error: loadgen wrote no result for $name (exit $status):" >&2
    tail -n 5 "$RUN_DIR/$name.log" >&2
    exit 1
  fi
  [ "$status" = 0 ] || echo "warning: $name had failed requests (counted in the table; $RUN_DIR/$name.log)" >&2
}

# A warm-up with the row's own settings, then the measurement.
drive() {
  local name=$1 tokens=$2
  shift 2
  loadgen_run "$name.warmup" "$WARMUP" "$tokens" "$@"
  loadgen_run "$name" "$DURATION" "$tokens" "$@"
}

drive_measured() {
  local name=$1 tokens=$2
  shift 2
  loadgen_run "$name" "$DURATION" "$tokens" "$@"
}

# The whole system through scripts/load.sh: flat out at 16 in flight, then open loop at half of
# the creates/s it reached. NAME [--kafka].
whole_system() {
  local name=$1 status
  shift
  local out=$RUN_DIR/$name
  for run in flat half; do
    local args=(--duration "$SYSTEM_DURATION" --concurrency 16 --drain "$SYSTEM_DRAIN")
    if [ "$run" = half ]; then
      local rate
      rate=$(python3 "$TABLE" half "$RUN_DIR/$name.json")
      args=(--duration "$SYSTEM_HALF_DURATION" --rate "$rate" --concurrency 1024 --drain "$SYSTEM_DRAIN")
    fi
    rm -rf "$out.$run"
    status=0
    NO_BUILD=1 PROFILE=$PROFILE OUT_DIR=$out.$run PORT_OFFSET=$SYSTEM_PORT_OFFSET \
      SMTP_PORT=$((2525 + SYSTEM_PORT_OFFSET)) scripts/load.sh "$@" "${args[@]}" \
      >"$out.$run.log" 2>&1 || status=$?
    [ -f "$out.$run/result.json" ] || {
      echo "error: scripts/load.sh $* ${args[*]} wrote no result (exit $status):" >&2
      tail -n 20 "$out.$run.log" >&2
      exit 1
    }
    [ "$status" = 0 ] || echo "warning: $name ($run) had failed requests or missing emails (counted in the table; $out.$run.log)" >&2
    if [ "$run" = flat ]; then
      cp "$out.$run/result.json" "$RUN_DIR/$name.json"
    else
      cp "$out.$run/result.json" "$RUN_DIR/$name-half.json"
    fi
  done
}

cleanup() {
  local status=$?
  stop_probe
  stop_runner
  exit "$status"
}
