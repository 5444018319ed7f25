# The brokers of a local run, shared by scripts/run-local.sh and scripts/load.sh: a Redis on
# localhost:6379 and a Kafka-protocol broker with production's topics. Each starter uses what
# already answers, else starts one in its own process group (a Ctrl-C in the terminal must not
# stop it under the apps' shutdown) and records its pid for stop_local_brokers.
# Sourced, not run; needs scripts/lib/require.sh's functions on demand.

redis_pid=
tansu_pid=

local_port_open() { { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && exec 3<&-; }

# True if a Redis answers PING on localhost:6379 (NOAUTH counts: it is a Redis wanting a password).
redis_answers() {
  local reply
  { exec 4<>/dev/tcp/127.0.0.1/6379; } 2>/dev/null || return 1
  printf 'PING\r\n' >&4
  IFS= read -r -t 2 reply <&4 || reply=
  exec 4<&-
  reply=${reply%$'\r'}
  [ "$reply" = +PONG ] || [[ $reply == -NOAUTH* ]]
}

# A Redis on localhost:6379: the one answering there, else a redis-server with its data in
# .local/redis.
start_local_redis() {
  if redis_answers; then
    echo "==> Using the Redis already answering on localhost:6379"
    return
  fi
  if local_port_open 6379; then
    echo "error: something that does not answer Redis PING listens on localhost:6379" >&2
    exit 1
  fi
  source scripts/lib/require.sh
  require_redis_server
  mkdir -p .local/redis
  echo "==> Starting redis-server on localhost:6379 (data in .local/redis, stopped with the run)"
  set -m
  redis-server --port 6379 --bind 127.0.0.1 --dir "$PWD/.local/redis" --appendonly yes \
    --daemonize no --logfile "$PWD/.local/redis/redis.log" &
  redis_pid=$!
  set +m
  for _ in $(seq 100); do
    redis_answers && return
    kill -0 "$redis_pid" 2>/dev/null || {
      echo "error: redis-server did not start; see .local/redis/redis.log" >&2
      exit 1
    }
    sleep 0.1
  done
}

# A JSON string of $1 (quotes, backslashes and line breaks escaped: a PEM spans lines).
json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# Checks the broker authentication asked for in the environment (KAFKA_AUTH_TYPE none or
# password; with password KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SASL_MECHANISM empty
# for PLAIN or SHA-256/SHA-512 for SCRAM; KAFKA_DISABLE_TLS; KAFKA_CA_CERT_FILE) and says what
# it is, never the password.
check_kafka_auth() {
  case "${KAFKA_AUTH_TYPE:-none}" in
    none)
      if [ -n "${KAFKA_SASL_USERNAME:-}${KAFKA_SASL_PASSWORD:-}${KAFKA_SASL_MECHANISM:-}" ]; then
        echo "error: KAFKA_SASL_* is set but KAFKA_AUTH_TYPE is none; set KAFKA_AUTH_TYPE=password to use it" >&2
        exit 2
      fi
      ;;
    password)
      if [ -z "${KAFKA_BROKERS:-}" ]; then
        echo "error: KAFKA_AUTH_TYPE=password needs KAFKA_BROKERS (the tansu started here has no SASL users)" >&2
        exit 2
      fi
      if [ -z "${KAFKA_SASL_USERNAME:-}" ] || [ -z "${KAFKA_SASL_PASSWORD:-}" ]; then
        echo "error: KAFKA_AUTH_TYPE=password needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD" >&2
        exit 2
      fi
      case "${KAFKA_SASL_MECHANISM:-}" in
        ''|SHA-256|SHA-512) ;;
        *) echo "error: KAFKA_SASL_MECHANISM must be empty (PLAIN), SHA-256 or SHA-512 (SCRAM), not '${KAFKA_SASL_MECHANISM}'" >&2
           exit 2 ;;
      esac
      ;;
    *)
      echo "error: KAFKA_AUTH_TYPE must be none or password, not '${KAFKA_AUTH_TYPE}'" >&2
      exit 2
      ;;
  esac
  case "${KAFKA_DISABLE_TLS:-}" in
    ''|true|false) ;;
    *) echo "error: KAFKA_DISABLE_TLS must be true or false, not '${KAFKA_DISABLE_TLS}'" >&2; exit 2 ;;
  esac
  if [ -n "${KAFKA_CA_CERT_FILE:-}" ] && ! grep -q -- '-----BEGIN CERTIFICATE-----' "$KAFKA_CA_CERT_FILE" 2>/dev/null; then
    echo "error: KAFKA_CA_CERT_FILE '${KAFKA_CA_CERT_FILE}' is not a readable PEM certificate" >&2
    exit 2
  fi
  if [ "${KAFKA_AUTH_TYPE:-none}" = password ]; then
    local mechanism=PLAIN tls=on
    [ -n "${KAFKA_SASL_MECHANISM:-}" ] && mechanism=SCRAM-${KAFKA_SASL_MECHANISM}
    [ "${KAFKA_DISABLE_TLS:-}" = true ] && tls=off
    echo "==> Kafka authentication: SASL $mechanism as '${KAFKA_SASL_USERNAME}', TLS $tls"
  fi
}

# .local/kafka/secrets.json: Secret `todo-kafka` as the production pub/sub component reads it
# (deploy/dapr/pubsub.yaml), every key present, from the broker list $1 and the environment.
# Created with mode 600, replacing any older file whole; the password is then taken out of the
# environment, so the apps started after this do not inherit it.
write_kafka_secrets() {
  local ca=
  [ -n "${KAFKA_CA_CERT_FILE:-}" ] && ca=$(cat "$KAFKA_CA_CERT_FILE")
  mkdir -p .local/kafka
  local tmp
  tmp=$(umask 077 && mktemp .local/kafka/secrets.json.XXXXXX)
  {
    printf '{"todo-kafka": {'
    printf '"brokers": %s, ' "$(json_string "$1")"
    printf '"auth-type": %s, ' "$(json_string "${KAFKA_AUTH_TYPE:-none}")"
    printf '"sasl-mechanism": %s, ' "$(json_string "${KAFKA_SASL_MECHANISM:-}")"
    printf '"username": %s, ' "$(json_string "${KAFKA_SASL_USERNAME:-}")"
    printf '"password": %s, ' "$(json_string "${KAFKA_SASL_PASSWORD:-}")"
    printf '"disable-tls": %s, ' "$(json_string "${KAFKA_DISABLE_TLS:-}")"
    printf '"ca.crt": %s' "$(json_string "$ca")"
    printf '}}\n'
  } >"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" .local/kafka/secrets.json
  unset KAFKA_SASL_PASSWORD
}

# The broker list in KAFKA_BROKERS, else a tansu started on 127.0.0.1:9092 (in memory); then the
# topics of deploy/redpanda/topics.conf, and .local/kafka/secrets.json, which the `kubernetes`
# secret store of deploy/local/kafka reads the production component's broker list and
# authentication from (see write_kafka_secrets).
start_local_kafka() {
  check_kafka_auth
  source scripts/lib/require.sh
  # The topics are created with tansu's admin client, whichever broker runs them.
  require_tansu
  local brokers="${KAFKA_BROKERS:-}"
  mkdir -p .local/kafka
  if [ -z "$brokers" ]; then
    brokers=127.0.0.1:9092
    if local_port_open 9092; then
      echo "error: something listens on 127.0.0.1:9092; set KAFKA_BROKERS if it is a Kafka broker" >&2
      exit 1
    fi
    echo "==> Starting tansu on $brokers (in-memory storage, stopped with the run)"
    set -m
    "$TANSU_BIN" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
      --storage-engine memory://tansu/ >.local/kafka/tansu.log 2>&1 &
    tansu_pid=$!
    set +m
    for _ in $(seq 100); do
      local_port_open 9092 && break
      kill -0 "$tansu_pid" 2>/dev/null || {
        echo "error: tansu did not start; see .local/kafka/tansu.log" >&2
        exit 1
      }
      sleep 0.1
    done
  else
    echo "==> Using the Kafka broker(s) at $brokers"
  fi
  if [ "${KAFKA_AUTH_TYPE:-none}" = password ]; then
    # tansu's admin client speaks neither SASL nor TLS.
    echo "==> Not creating topics on a broker that needs authentication: create those of deploy/redpanda/topics.conf with its own tools (e.g. rpk topic create)"
  else
    echo "==> Creating the topics of deploy/redpanda/topics.conf"
    local first="${brokers%%,*}" name partitions out
    grep -v '^[[:space:]]*#' deploy/redpanda/topics.conf | grep -v '^[[:space:]]*$' |
      while read -r name partitions _; do
        if ! out=$("$TANSU_BIN" topic create "$name" --partitions "$partitions" --broker "tcp://$first" 2>&1); then
          echo "    $name: not created (it may exist already): ${out##*$'\n'}" >&2
        fi
      done
  fi
  write_kafka_secrets "$brokers"
}

# Stops the brokers this script started (a Redis keeps its data in .local/redis; tansu's topics
# and events are gone).
stop_local_brokers() {
  if [ -n "$tansu_pid" ]; then
    echo "==> Stopping the tansu broker this script started (its topics and events are gone)"
    kill -TERM "$tansu_pid" 2>/dev/null || true
    wait "$tansu_pid" 2>/dev/null || true
    tansu_pid=
  fi
  if [ -n "$redis_pid" ]; then
    echo "==> Stopping the redis-server this script started (data kept in .local/redis)"
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=
  fi
}
