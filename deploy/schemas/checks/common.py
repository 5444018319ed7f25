"""Shared facts (apps, topics, consumer table) and helpers of the deployment checks."""

import yaml

APPS = {
    "task-api": 8080,
    "email-worker": 8081,
    "reminder-scheduler": 8082,
    "audit-logger": 8083,
}
TOPICS = [
    "task-created",
    "task-updated",
    "task-completed",
    "task-deleted",
    "task-due-soon",
    "notification-sent",
    "notification-failed",
]
SUBSCRIBERS = ["email-worker", "reminder-scheduler", "audit-logger"]
DEAD_LETTER_TOPICS = [f"{app}-dead-letters" for app in SUBSCRIBERS]
ALL_TOPICS = TOPICS + DEAD_LETTER_TOPICS
# Who consumes what (the events crate's Topic::consumers), plus audit-logger on dead letters.
CONSUMERS = {
    "task-created": ["email-worker", "reminder-scheduler", "audit-logger"],
    "task-updated": ["reminder-scheduler", "audit-logger"],
    "task-completed": ["reminder-scheduler", "audit-logger"],
    "task-deleted": ["reminder-scheduler", "audit-logger"],
    "task-due-soon": ["email-worker", "audit-logger"],
    "notification-sent": ["audit-logger"],
    "notification-failed": ["audit-logger"],
    # audit-logger records every dead letter; each subscriber consumes its own again (the
    # second chance for what failed only because it was down or slow).
    **{
        dlq: sorted({"audit-logger", dlq.removesuffix("-dead-letters")})
        for dlq in DEAD_LETTER_TOPICS
    },
}
CUSTOM_GROUPS = ("dapr.io/", "keda.sh/")
REQUIRED_ANNOTATIONS = [
    "enabled",
    "app-id",
    "app-port",
    "config",
    "log-level",
    "sidecar-cpu-request",
    "sidecar-cpu-limit",
    "sidecar-memory-request",
    "sidecar-memory-limit",
    "enable-app-health-check",
    "app-health-check-path",
    "api-token-secret",
    "app-token-secret",
    "graceful-shutdown-seconds",
    "enable-metrics",
    "metrics-port",
]

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def key(obj):
    return (obj.get("kind"), obj.get("metadata", {}).get("name"))


def index(docs):
    return {key(d): d for d in docs}


def metadata_map(component):
    """A Component's metadata list as name -> entry."""
    return {m.get("name"): m for m in component.get("spec", {}).get("metadata", []) or []}

def secret_keys(docs, extra_secrets):
    """name -> set of keys, from the render's Secrets (and the example file if given)."""
    out = {}
    for d in list(docs) + list(extra_secrets):
        if d.get("kind") != "Secret":
            continue
        data = {**(d.get("data") or {}), **(d.get("stringData") or {})}
        out[d["metadata"]["name"]] = set(data)
    return out


def check_secret_ref(where, secrets, name, key_name):
    if name not in secrets:
        problem(where, f"Secret `{name}` is referenced but not defined")
    elif key_name is not None and key_name not in secrets[name]:
        problem(where, f"Secret `{name}` has no key `{key_name}`")


def selects(selector, labels):
    match = (selector or {}).get("matchLabels") or selector or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())
