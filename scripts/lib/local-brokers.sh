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

# The broker list in KAFKA_BROKERS, else a tansu started on 127.0.0.1:9092 (in memory); then the
# topics of deploy/redpanda/topics.conf, and .local/kafka/secrets.json, which the `kubernetes`
# secret store of deploy/local/kafka reads the production component's broker list from.
start_local_kafka() {
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
  echo "==> Creating the topics of deploy/redpanda/topics.conf"
  local first="${brokers%%,*}" name partitions out
  grep -v '^[[:space:]]*#' deploy/redpanda/topics.conf | grep -v '^[[:space:]]*$' |
    while read -r name partitions _; do
      if ! out=$("$TANSU_BIN" topic create "$name" --partitions "$partitions" --broker "tcp://$first" 2>&1); then
        echo "    $name: not created (it may exist already): ${out##*$'\n'}" >&2
      fi
    done
  printf '{"todo-kafka": {"brokers": "%s"}}\n' "$brokers" >.local/kafka/secrets.json
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
