#!/usr/bin/env bash
# Instruction counts per operation with callgrind, which stay the same on a busy machine where
# timings do not: task-api per create, the email-worker per email, the audit-logger per create
# (a task trail's entry and the user trail's), and the sidecar runner per create (task-api's
# sidecar, the in-memory broker's delivery, the email-worker's and the audit-logger's sidecars).
#
#   scripts/profile.sh                              1,000 creates after 200 of warm-up
#   scripts/profile.sh --creates 500 --warmup 100 --out docs/perf/callgrind-after.md
#
# The runner (`sidecar run -f`) runs under valgrind --tool=callgrind, and so do task-api, the
# email-worker and the audit-logger (the run file's commands), the email-worker sending over SMTP
# to loadgen's sink. After the warm-up (every email arrived and every create was audited),
# callgrind_control zeroes each process's counters; loadgen then makes N creates and waits for
# their N emails and N audit entries (it reads the runner's log), and callgrind_control dumps the
# counters: instructions (Ir) of that window ÷ N. Prints, and writes as Markdown (--out, default
# .local/profile/callgrind.md), the Ir per operation and each process's top 15 functions,
# inclusive and self (scripts/lib/callgrind_report.py reads the dumps: callgrind_annotate books
# calls already under way when the counters were zeroed as their caller's own cost). Background work that runs on a timer (the outbox
# relay's sweep, health probes) counts too, so the figures include a small share that follows the
# window's length rather than N: compare runs with the same N and --concurrency.
# Environment: PROFILE (release or debug, default release), NO_BUILD=1, BIN_DIR (the binaries'
# folder, default target/$PROFILE), BENCH_PORT_BASE (first of seven loopback ports, default 18500). Installs Debian's valgrind when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "error: $*" >&2; exit 2; }
creates=1000
warmup=200
concurrency=4
out=.local/profile/callgrind.md
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    --creates) [ $# -ge 2 ] || die "--creates needs a number"; creates=$2; shift ;;
    --warmup) [ $# -ge 2 ] || die "--warmup needs a number"; warmup=$2; shift ;;
    --concurrency) [ $# -ge 2 ] || die "--concurrency needs a number"; concurrency=$2; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a file"; out=$2; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
for n in "$creates" "$warmup" "$concurrency"; do
  case "$n" in ''|*[!0-9]*) die "--creates, --warmup and --concurrency take whole numbers, not '$n'" ;; esac
done
[ "$creates" -ge 1 ] || die "--creates must be at least 1"
[ "$warmup" -ge 1 ] || die "--warmup must be at least 1"
[ "$concurrency" -ge 1 ] && [ "$concurrency" -le 64 ] || die "--concurrency must be 1..64"

source scripts/lib/require.sh
if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_control >/dev/null 2>&1; then
  apt_install valgrind || {
    echo "error: valgrind is required (callgrind, callgrind_control, callgrind_annotate)." >&2
    echo "       install it with: sudo apt-get install valgrind" >&2
    exit 1
  }
fi

PROFILE=${PROFILE:-release}
case "$PROFILE" in release|debug) ;; *) die "PROFILE must be release or debug" ;; esac
BIN=${BIN_DIR:-target/$PROFILE}
PORT_BASE=${BENCH_PORT_BASE:-18500}
case "$PORT_BASE" in ''|*[!0-9]*) die "BENCH_PORT_BASE must be a port number" ;; esac
[ "$PORT_BASE" -ge 1024 ] && [ "$PORT_BASE" -le 65000 ] || die "BENCH_PORT_BASE must be 1024..65000"
TASK_PORT=$PORT_BASE TASK_DAPR=$((PORT_BASE + 1))
EMAIL_PORT=$((PORT_BASE + 2)) EMAIL_DAPR=$((PORT_BASE + 3)) SMTP_PORT=$((PORT_BASE + 4))
AUDIT_PORT=$((PORT_BASE + 5)) AUDIT_DAPR=$((PORT_BASE + 6))
# DEV ONLY: the key of this run's own tokens.
JWT_SECRET=profile-only-jwt-secret-0123456789-abcdefghijklmnop
RUN_FILE=.profile-run.$$.yaml # beside dapr.yaml, so the same relative paths hold
DIR=.local/profile/$(date -u +%Y%m%dT%H%M%SZ).$$
mkdir -p "$DIR"
RUN_DIR=$DIR
source scripts/lib/bench-run.sh
READY_TRIES=1800 # valgrind starts slowly: up to 3 minutes

# The sidecar links librdkafka, built from source (cmake, C headers; see scripts/lib/require.sh).
[ "${NO_BUILD:-0}" = 1 ] || require_kafka_build_tools >&2
if [ "${NO_BUILD:-0}" = 1 ]; then
  echo "==> Using the $PROFILE binaries as they are (NO_BUILD=1)" >&2
elif [ "$PROFILE" = release ]; then
  echo "==> Building release binaries (cargo build --release --bins)..." >&2
  cargo build --release --bins >&2
else
  cargo build --bins >&2
fi
for binary in sidecar task-api email-worker audit-logger loadgen; do
  [ -x "$BIN/$binary" ] || die "$BIN/$binary is missing (build it, or drop NO_BUILD=1)"
done
ports_free "$TASK_PORT" "$TASK_DAPR" "$EMAIL_PORT" "$EMAIL_DAPR" "$SMTP_PORT" "$AUDIT_PORT" \
  "$AUDIT_DAPR"

callgrind() {
  printf '"valgrind", "--tool=callgrind", "--callgrind-out-file=%s/%s.%%p.out", "%s"' \
    "$DIR" "$1" "$BIN/$1"
}
cat >"$RUN_FILE" <<EOF
# Written by scripts/profile.sh; removed when it ends.
version: 1
name: profile
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
    appPort: $TASK_PORT
    daprHTTPPort: $TASK_DAPR
    command: [$(callgrind task-api)]
    env:
      JWT_SECRET: $JWT_SECRET
  - appID: email-worker
    appDirPath: .
    appPort: $EMAIL_PORT
    daprHTTPPort: $EMAIL_DAPR
    command: [$(callgrind email-worker)]
    env:
      SMTP_URL: smtp://127.0.0.1:$SMTP_PORT
      MAIL_FROM: "Tasks <tasks@localhost>"
  - appID: audit-logger
    appDirPath: .
    appPort: $AUDIT_PORT
    daprHTTPPort: $AUDIT_DAPR
    command: [$(callgrind audit-logger)]
    env:
      # DEV ONLY: this run's own keys.
      AUDIT_ADMIN_TOKEN: profile-only-audit-admin-token
      AUDIT_CHAIN_KEY: profile-only-audit-chain-key-0123456789-abcdefghijklmnop
EOF

trap cleanup EXIT
trap 'exit 130' INT TERM
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"

echo "==> Starting the runner, task-api, the email-worker and the audit-logger under callgrind (log: $DIR/runner.log)" >&2
set -m
valgrind --tool=callgrind --callgrind-out-file="$DIR/sidecar.%p.out" \
  "$BIN/sidecar" run -f "$RUN_FILE" --no-console >"$DIR/runner.log" 2>&1 &
runner=$!
set +m
wait_ready "$runner" "$DIR/runner.log" "$TASK_DAPR /v1.0/healthz" "$EMAIL_DAPR /v1.0/healthz" \
  "$AUDIT_DAPR /v1.0/healthz" "$TASK_PORT /readyz" "$EMAIL_PORT /readyz" "$AUDIT_PORT /readyz"

# The apps' process ids from the runner's table (printed once every app has started).
pid_of() {
  awk -v app="$1" '/^APP .*DAPR HTTP PORT/ { table = 1; next }
       table && $1 == app { print $6; exit }' "$DIR/runner.log"
}
for _ in $(seq 600); do [ -n "$(pid_of audit-logger)" ] && break; sleep 0.1; done
task_pid=$(pid_of task-api)
email_pid=$(pid_of email-worker)
audit_pid=$(pid_of audit-logger)
[ -n "$task_pid" ] && [ -n "$email_pid" ] && [ -n "$audit_pid" ] || die "no process ids in the runner's table ($DIR/runner.log)"

user_id=$(cat /proc/sys/kernel/random/uuid)
token=$(JWT_SECRET=$JWT_SECRET "$BIN/task-api" token --user-id "$user_id" --email profile@example.com --ttl 2h)
tokens=$token
for _ in 2 3 4 5 6 7 8; do
  user_id=$(cat /proc/sys/kernel/random/uuid)
  tokens="$tokens,$(JWT_SECRET=$JWT_SECRET "$BIN/task-api" token --user-id "$user_id" --email profile@example.com --ttl 2h)"
done

creates_with_emails() { # NAME COUNT
  LOADGEN_TOKEN=$tokens "$BIN/loadgen" --url "http://127.0.0.1:$TASK_PORT" \
    --smtp-listen "127.0.0.1:$SMTP_PORT" --requests "$2" --duration 1h --drain 600s \
    --concurrency "$concurrency" --timeout 60s --process-dir "$BIN" --run-log "$DIR/runner.log" \
    --out "$DIR/$1.json" --plot "$DIR/$1.svg" >"$DIR/$1.log" 2>&1 || {
    echo "error: the $1 creates did not all succeed with their email and audit entry:" >&2
    tail -n 5 "$DIR/$1.log" >&2
    exit 1
  }
}

echo "==> Warm-up: $warmup creates, their emails and audit entries" >&2
creates_with_emails warmup "$warmup"
for pid in "$runner" "$task_pid" "$email_pid" "$audit_pid"; do callgrind_control -z "$pid" >/dev/null; done
echo "==> Measured: $creates creates, their emails and audit entries" >&2
creates_with_emails measured "$creates"
for pid in "$runner" "$task_pid" "$email_pid" "$audit_pid"; do callgrind_control -d "$pid" >/dev/null; done

# The dump of the measured window: zeroing writes none, so it is each process's first part.
dump_of() {
  local file="$DIR/$1.$2.out.1"
  for _ in $(seq 600); do [ -s "$file" ] && break; sleep 0.1; done
  [ -s "$file" ] || die "no callgrind dump for $1 (pid $2) at $file"
  printf '%s' "$file"
}
for entry in "task-api $task_pid" "email-worker $email_pid" "audit-logger $audit_pid" \
  "sidecar $runner"; do
  read -r name pid <<<"$entry"
  cp "$(dump_of "$name" "$pid")" "$DIR/$name.dump"
done

python3 scripts/lib/callgrind_report.py "$DIR" "$creates" \
  "Commit $commit, $PROFILE build, $(valgrind --version), $(date -u +%Y-%m-%d) UTC, \
\`scripts/profile.sh --creates $creates --warmup $warmup --concurrency $concurrency\`: $creates \
creates (8 users, $concurrency in flight), their $creates emails and audit entries after $warmup \
of warm-up; \
each process's counters zeroed before that window and dumped after it." \
  >"$DIR/callgrind.md"
mkdir -p "$(dirname "$out")"
cp "$DIR/callgrind.md" "$out"
cat "$out"
echo "==> Written to $out (raw dumps in $DIR)" >&2
