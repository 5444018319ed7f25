"""Checks of the Dapr resources: components, declarative subscriptions and the topic list."""

import os

from .common import ALL_TOPICS, APPS, CONSUMERS, load_all, metadata_map, problem


def check_pubsub(where, comp):
    spec = comp.get("spec", {})
    if spec.get("type") != "pubsub.kafka":
        problem(where, "todo-pubsub must be pubsub.kafka (Redpanda speaks the Kafka API)")
    md = metadata_map(comp)
    for forbidden in ("consumerGroup", "consumerID"):
        if forbidden in md:
            problem(where, f"`{forbidden}` must be unset: the group must be each app's id (fan-out)")
    if "brokers" not in md:
        problem(where, "`brokers` is required")
    auth_item = md.get("authType") or {}
    auth = auth_item.get("value")
    if "secretKeyRef" in auth_item:
        # The Secret decides (deploy/dapr/pubsub.yaml): then every credential comes from it too.
        for k in ("saslUsername", "saslPassword"):
            if "secretKeyRef" not in (md.get(k) or {}):
                problem(where, f"authType comes from a Secret, so `{k}` must too")
    elif auth not in ("none", "password", "mtls", "oidc", "certificate", "awsiam"):
        problem(where, "`authType` is required (none, password, mtls, ...)")
    if auth == "password":
        for k in ("saslUsername", "saslPassword"):
            if k not in md:
                problem(where, f"authType password needs `{k}`")
            elif k == "saslPassword" and "secretKeyRef" not in md[k]:
                problem(where, "saslPassword must come from a secretKeyRef")
        if (md.get("disableTls") or {}).get("value") == "true":
            problem(where, "production credentials must not travel without TLS")
    allowed = (md.get("allowedTopics") or {}).get("value")
    if allowed is None:
        problem(where, "`allowedTopics` is missing")
    else:
        got = [t.strip() for t in str(allowed).split(",") if t.strip()]
        missing = sorted(set(ALL_TOPICS) - set(got))
        extra = sorted(set(got) - set(ALL_TOPICS))
        if missing:
            problem(where, f"allowedTopics lacks {', '.join(missing)} (dead letters are gated too)")
        if extra:
            problem(where, f"allowedTopics has unknown topics {', '.join(extra)}")
    check_scopes(where, comp)


def check_statestore(where, comp):
    if comp.get("spec", {}).get("type") != "state.redis":
        problem(where, "todo-state must be state.redis")
    md = metadata_map(comp)
    if "redisHost" not in md:
        problem(where, "`redisHost` is required")
    if "secretKeyRef" not in (md.get("redisPassword") or {}):
        problem(where, "redisPassword must come from a secretKeyRef")
    if "keyPrefix" in md and (md["keyPrefix"].get("value") not in (None, "appid")):
        problem(where, "keyPrefix must stay the default (appid): services own their keys")
    check_scopes(where, comp)


def check_scopes(where, comp):
    scopes = comp.get("scopes") or []
    unknown = sorted(set(scopes) - set(APPS))
    if unknown:
        problem(where, f"scopes name unknown apps: {', '.join(unknown)}")
    if set(scopes) != set(APPS):
        problem(where, "all four services use this component: scope it to exactly those")

def cmd_subscriptions(directory):
    kz_path = os.path.join(directory, "kustomization.yaml")
    listed = set((load_all(kz_path)[0].get("resources") or [])) if os.path.exists(kz_path) else set()
    seen = {}
    for fname in sorted(os.listdir(directory)):
        if not fname.endswith(".yaml") or fname == "kustomization.yaml":
            continue
        path = os.path.join(directory, fname)
        if fname not in listed:
            problem(path, "not listed in kustomization.yaml")
        for d in load_all(path):
            where = f"{path}: Subscription/{d.get('metadata', {}).get('name')}"
            spec = d.get("spec", {})
            topic = spec.get("topic")
            scopes = d.get("scopes") or []
            if len(scopes) != 1:
                problem(where, "must be scoped to exactly one app")
                continue
            app = scopes[0]
            if spec.get("pubsubname") != "todo-pubsub":
                problem(where, "pubsubname must be todo-pubsub")
            if app not in CONSUMERS.get(topic, []):
                problem(where, f"`{app}` does not consume `{topic}`")
            if (spec.get("routes") or {}).get("default") != f"/events/{topic}":
                problem(where, f"route must be /events/{topic}")
            own_dlq = f"{app}-dead-letters"
            dlq = spec.get("deadLetterTopic")
            if topic == own_dlq:
                if dlq:
                    problem(where, "a subscription to the app's own dead-letter topic must not dead-letter into it again")
            elif dlq != own_dlq:
                problem(where, f"deadLetterTopic must be {own_dlq}")
            if (app, topic) in seen:
                problem(where, f"duplicate of {seen[(app, topic)]}")
            seen[(app, topic)] = path
            if fname != f"{app}--{topic}.yaml":
                problem(where, f"file should be named {app}--{topic}.yaml")
    for topic, apps in CONSUMERS.items():
        for app in apps:
            if (app, topic) not in seen:
                problem(directory, f"no declarative subscription for ({app}, {topic})")


def cmd_topics(path):
    rows = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
                problem(f"{path}:{n}", "expected `<topic> <partitions> <retention.ms>`")
                continue
            rows[parts[0]] = (int(parts[1]), int(parts[2]))
    day = 86_400_000
    expect = {"task-created": (3, 7 * day), "task-updated": (3, 7 * day), "task-completed": (3, 7 * day),
              "task-due-soon": (None, day)}
    for topic in ALL_TOPICS:
        if topic not in rows:
            problem(path, f"topic `{topic}` is missing")
    for topic in set(rows) - set(ALL_TOPICS):
        problem(path, f"topic `{topic}` is not used by any service")
    for topic, (parts, retention) in expect.items():
        if topic in rows:
            if parts is not None and rows[topic][0] != parts:
                problem(path, f"{topic} should have {parts} partitions")
            if rows[topic][1] != retention:
                problem(path, f"{topic} should keep {retention} ms")
