#!/bin/sh
# Creates (or brings up to date) every topic listed in topics.conf. Idempotent: an existing
# topic gets its retention and min.insync.replicas re-applied and, if the file asks for more
# partitions than it has, more partitions (Kafka can only grow them). Replication is never
# changed on an existing topic.
#
# Broker and credentials come from rpk's own environment variables: RPK_BROKERS, and for a
# secured cluster RPK_TLS_ENABLED, RPK_TLS_CA, RPK_USER, RPK_PASS, RPK_SASL_MECHANISM.
# TOPIC_REPLICAS sets the replication factor of new topics (default 3).
set -eu

conf="${TOPICS_FILE:-$(dirname "$0")/topics.conf}"
replicas="${TOPIC_REPLICAS:-3}"
# With 3 replicas an acknowledged write survives one broker loss; never ask for more in-sync
# replicas than there are replicas.
if [ "$replicas" -ge 3 ]; then min_isr=2; else min_isr=1; fi

echo "waiting for the Kafka API at ${RPK_BROKERS:-127.0.0.1:9092}"
tries=0
until rpk cluster info >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "the Kafka API did not answer after 60 attempts" >&2
    exit 1
  fi
  sleep 2
done

grep -v '^[[:space:]]*#' "$conf" | grep -v '^[[:space:]]*$' | while read -r name partitions retention; do
  if rpk topic describe "$name" >/dev/null 2>&1; then
    current=$(rpk topic describe "$name" --print-partitions | grep -c '^[[:space:]]*[0-9]' || true)
    if [ "$current" -lt "$partitions" ]; then
      rpk topic add-partitions "$name" --num "$((partitions - current))"
    fi
    rpk topic alter-config "$name" \
      --set "retention.ms=$retention" \
      --set "min.insync.replicas=$min_isr" \
      --set cleanup.policy=delete
    echo "updated $name"
  else
    rpk topic create "$name" \
      --partitions "$partitions" \
      --replicas "$replicas" \
      --topic-config "retention.ms=$retention" \
      --topic-config "min.insync.replicas=$min_isr" \
      --topic-config cleanup.policy=delete
    echo "created $name"
  fi
done
