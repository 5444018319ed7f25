"""Cross-checks of one rendered overlay."""

import os

from .common import APPS, CONSUMERS, check_secret_ref, index, load_all, metadata_map, problem, secret_keys
from .dapr import check_pubsub, check_statestore
from .network import check_network_policies
from .workloads import check_deployment


def cmd_render(render, secrets_file=None):
    docs = load_all(render)
    by_key = index(docs)
    extra = load_all(secrets_file) if secrets_file else []
    secrets = secret_keys(docs, extra)

    namespaces = {d["metadata"].get("namespace") for d in docs if d.get("kind") != "Namespace"}
    if len(namespaces) != 1 or None in namespaces:
        problem(render, f"objects must share one namespace, found {sorted(map(str, namespaces))}")

    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if sorted(d["metadata"]["name"] for d in deployments) != sorted(APPS):
        problem(render, f"expected one Deployment per service {sorted(APPS)}")
    for dep in deployments:
        check_deployment(render, dep, by_key, docs, secrets)

    pubsub = by_key.get(("Component", "todo-pubsub"))
    state = by_key.get(("Component", "todo-state"))
    if pubsub is None:
        problem(render, "Component todo-pubsub is missing")
    else:
        check_pubsub(f"{render}: Component/todo-pubsub", pubsub)
        check_same_as_source(f"{render}: Component/todo-pubsub", pubsub, "pubsub.yaml")
    if state is None:
        problem(render, "Component todo-state is missing")
    else:
        check_statestore(f"{render}: Component/todo-state", state)
        check_same_as_source(f"{render}: Component/todo-state", state, "statestore.yaml")
    for d in docs:
        if d.get("kind") != "Component":
            continue
        if d.get("auth", {}).get("secretStore") not in (None, "kubernetes"):
            problem(f"{render}: Component/{d['metadata']['name']}", "on Kubernetes, secrets come from the built-in kubernetes store")
        for m in d.get("spec", {}).get("metadata", []) or []:
            ref = m.get("secretKeyRef")
            if ref:
                check_secret_ref(f"{render}: Component/{d['metadata']['name']}: {m['name']}", secrets, ref.get("name"), ref.get("key"))
    if any(d.get("kind") == "Subscription" for d in docs):
        problem(render, "declarative Subscriptions are in the render; the apps subscribe programmatically")

    for d in docs:
        if d.get("kind") != "Resiliency":
            continue
        where = f"{render}: Resiliency/{d['metadata']['name']}"
        spec = d.get("spec", {})
        policies = spec.get("policies", {})
        defined = {
            "timeout": set((policies.get("timeouts") or {})),
            "retry": set((policies.get("retries") or {})),
            "circuitBreaker": set((policies.get("circuitBreakers") or {})),
        }
        comps = (spec.get("targets") or {}).get("components") or {}
        for comp_name, dirs in comps.items():
            if ("Component", comp_name) not in by_key:
                problem(where, f"targets component `{comp_name}`, which is not in the render")
            for direction, refs in (dirs or {}).items():
                for kind_, policy in (refs or {}).items():
                    if policy not in defined.get(kind_, set()):
                        problem(where, f"{comp_name}.{direction}.{kind_} names undefined policy `{policy}`")
        # Deliveries and publishes are retried; state calls are not (daprd would retry the ETag
        # conflicts of deletes and transactions, which the services resolve themselves). No
        # component gets a circuit breaker: daprd shares one per component across deliveries,
        # publishes, dead-letter publishes and state calls, and an open one fails them all.
        for comp_name, direction in (("todo-pubsub", "inbound"), ("todo-pubsub", "outbound")):
            refs = (comps.get(comp_name) or {}).get(direction) or {}
            if not refs.get("retry") or not refs.get("timeout"):
                problem(where, f"{comp_name} {direction} needs a retry and a timeout")
        if ((comps.get("todo-state") or {}).get("outbound") or {}).get("retry"):
            problem(where, "todo-state outbound must not retry")
        for comp_name, dirs in comps.items():
            for direction, refs in (dirs or {}).items():
                if (refs or {}).get("circuitBreaker"):
                    problem(where, f"{comp_name}.{direction} must not name a circuit breaker")
        for name_, r in (policies.get("retries") or {}).items():
            if r.get("policy") != "exponential":
                problem(where, f"retry `{name_}` should be exponential")
        if "targets" in d:
            problem(where, "`targets` must sit under `spec`")

    cfg = by_key.get(("Configuration", "todo-config"))
    if cfg is None:
        problem(render, "Configuration todo-config is missing")
    else:
        spec = cfg.get("spec", {})
        if "samplingRate" not in (spec.get("tracing") or {}):
            problem(f"{render}: Configuration/todo-config", "tracing.samplingRate is missing")
        if (spec.get("metrics") or {}).get("enabled") is not True:
            problem(f"{render}: Configuration/todo-config", "metrics.enabled must be true")

    check_network_policies(render, docs)
    check_ingresses(render, docs, by_key)

    job = by_key.get(("Job", "redpanda-topics"))
    if job is None:
        problem(render, "the topic Job redpanda-topics is missing")
    else:
        for vol in job["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in vol and ("ConfigMap", vol["configMap"]["name"]) not in by_key:
                problem(f"{render}: Job/redpanda-topics", f"volume ConfigMap `{vol['configMap']['name']}` is not in the render")
            if "secret" in vol:
                check_secret_ref(f"{render}: Job/redpanda-topics", secrets, vol["secret"]["secretName"], None)

    for d in docs:
        if d.get("kind") == "ScaledObject":
            where = f"{render}: ScaledObject/{d['metadata']['name']}"
            target = d["spec"]["scaleTargetRef"]["name"]
            for t in d["spec"]["triggers"]:
                if t["type"] != "kafka":
                    continue
                md = t["metadata"]
                if md.get("consumerGroup") != target:
                    problem(where, f"consumerGroup must be the app id `{target}` (daprd's default group)")
                topic = md.get("topic")
                if topic and target not in CONSUMERS.get(topic, []):
                    problem(where, f"`{target}` does not consume `{topic}`")
                ref = (t.get("authenticationRef") or {}).get("name")
                if ref and ("TriggerAuthentication", ref) not in by_key:
                    problem(where, f"authenticationRef `{ref}` is not in the render")
        if d.get("kind") == "TriggerAuthentication":
            for ref in d["spec"].get("secretTargetRef", []):
                check_secret_ref(f"{render}: TriggerAuthentication/{d['metadata']['name']}", secrets, ref["name"], ref["key"])


def check_ingresses(render, docs, by_key):
    """Every Ingress backend must be an existing Service port, and only task-api is public."""
    for d in docs:
        if d.get("kind") != "Ingress":
            continue
        where = f"{render}: Ingress/{d['metadata']['name']}"
        for rule in d["spec"].get("rules", []):
            for path in (rule.get("http") or {}).get("paths", []):
                backend = path["backend"]["service"]
                svc = by_key.get(("Service", backend["name"]))
                if svc is None:
                    problem(where, f"backend Service `{backend['name']}` is not in the render")
                    continue
                if backend["name"] != "task-api":
                    problem(where, f"only task-api is public, not `{backend['name']}`")
                port = backend.get("port", {})
                names = {p.get("name") for p in svc["spec"]["ports"]}
                numbers = {p.get("port") for p in svc["spec"]["ports"]}
                if port.get("name") not in names and port.get("number") not in numbers:
                    problem(where, f"backend port {port} is not a port of Service `{backend['name']}`")


# Entries an overlay may change (where and how to connect); every other entry of a component
# must render exactly as written in deploy/dapr, so an overlay that replaces the metadata list
# cannot silently drop or alter one.
OVERLAY_MAY_CHANGE = {"brokers", "authType", "saslMechanism", "saslUsername", "saslPassword",
                      "disableTls", "caCert", "clientCert", "clientKey", "skipVerify",
                      "redisHost", "enableTLS"}


def check_same_as_source(where, rendered, source_file):
    source_path = os.path.join(os.path.dirname(__file__), "..", "..", "dapr", source_file)
    source = load_all(source_path)[0]
    got, want = metadata_map(rendered), metadata_map(source)
    for name in set(got) | set(want):
        if name in OVERLAY_MAY_CHANGE:
            continue
        if got.get(name) != want.get(name):
            problem(where, f"metadata `{name}` differs from deploy/dapr/{source_file} ({got.get(name)} vs {want.get(name)})")
    if sorted(rendered.get("scopes") or []) != sorted(source.get("scopes") or []):
        problem(where, f"scopes differ from deploy/dapr/{source_file}")
