#!/usr/bin/env python3
"""Offline checks of the deployment that a schema cannot express.

Used by scripts/check-deploy.sh. Sub-commands:

  split RENDER OUTDIR
      Splits a rendered `kubectl kustomize` output into OUTDIR/native.yaml (the objects that
      kubernetes-validate knows) and one file per custom object under OUTDIR/<Kind>/, so each
      can be checked against its JSON Schema.
  render RENDER [--secrets FILE]
      Cross-checks one rendered overlay: the dapr.io/* annotations against the app container,
      ConfigMap, Secrets, probes, security context, Service/HPA/PDB, the Dapr resources and the
      network policies. FILE supplies the Secrets when the overlay does not generate them.
  subscriptions DIR
      The declarative subscriptions against the consumer table.
  compose COMPOSE_CONFIG COMPONENTS_DIR BASE_DAPR_DIR
      The compose stack (output of `docker-compose config`) and its components against the
      Kubernetes ones.
  topics TOPICS_CONF
      The topic list against the topics the services use.

Every problem is printed as `<file>: <object>: <problem>`; the exit status is 1 if any.
"""

import os
import re
import sys

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
    **{dlq: ["audit-logger"] for dlq in DEAD_LETTER_TOPICS},
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


# ---------------------------------------------------------------------------------------------
# split


def cmd_split(render, outdir):
    docs = load_all(render)
    os.makedirs(outdir, exist_ok=True)
    native = [d for d in docs if not str(d.get("apiVersion", "")).startswith(CUSTOM_GROUPS)]
    with open(os.path.join(outdir, "native.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump_all(native, f, sort_keys=False)
    for d in docs:
        if d in native:
            continue
        kind_dir = os.path.join(outdir, d["kind"])
        os.makedirs(kind_dir, exist_ok=True)
        with open(os.path.join(kind_dir, d["metadata"]["name"] + ".yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(d, f, sort_keys=False)


# ---------------------------------------------------------------------------------------------
# render


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


def check_deployment(src, dep, by_key, docs, secrets):
    name = dep["metadata"]["name"]
    where = f"{src}: Deployment/{name}"
    pod = dep["spec"]["template"]
    ann = pod.get("metadata", {}).get("annotations", {}) or {}
    labels = pod.get("metadata", {}).get("labels", {}) or {}
    spec = pod["spec"]

    for a in REQUIRED_ANNOTATIONS:
        if f"dapr.io/{a}" not in ann:
            problem(where, f"annotation dapr.io/{a} is missing")
    for a, v in ann.items():
        if a.startswith("dapr.io/") and not isinstance(v, str):
            problem(where, f"annotation {a} must be a string, got {v!r}")
    if ann.get("dapr.io/enabled") != "true":
        problem(where, 'dapr.io/enabled must be "true"')
    if ann.get("dapr.io/app-id") != name:
        problem(where, f"dapr.io/app-id {ann.get('dapr.io/app-id')!r} differs from the Deployment name")
    if name in APPS and ann.get("dapr.io/app-port") != str(APPS[name]):
        problem(where, f"dapr.io/app-port should be {APPS[name]} (the service's port)")
    if ann.get("dapr.io/enable-app-health-check") != "true":
        problem(where, 'dapr.io/enable-app-health-check must be "true"')
    if ann.get("dapr.io/app-health-check-path") != "/healthz":
        problem(where, "dapr.io/app-health-check-path must be /healthz")
    if ann.get("dapr.io/enable-metrics") != "true":
        problem(where, 'dapr.io/enable-metrics must be "true"')
    if ann.get("dapr.io/log-level") not in ("debug", "info", "warn", "error"):
        problem(where, "dapr.io/log-level must be debug, info, warn or error")
    config = ann.get("dapr.io/config")
    if config and ("Configuration", config) not in by_key:
        problem(where, f"dapr.io/config names Configuration `{config}`, which is not in the render")

    grace = spec.get("terminationGracePeriodSeconds", 30)
    try:
        shutdown = int(ann.get("dapr.io/graceful-shutdown-seconds", "-1"))
        if shutdown >= grace:
            problem(where, f"dapr.io/graceful-shutdown-seconds ({shutdown}) must be below terminationGracePeriodSeconds ({grace})")
    except ValueError:
        problem(where, "dapr.io/graceful-shutdown-seconds is not an integer")

    for a in ("api-token-secret", "app-token-secret"):
        if a in [x.split("/", 1)[1] for x in ann if x.startswith("dapr.io/")]:
            check_secret_ref(f"{where} (dapr.io/{a})", secrets, ann[f"dapr.io/{a}"], "token")

    psc = spec.get("securityContext", {}) or {}
    if psc.get("runAsNonRoot") is not True:
        problem(where, "pod securityContext.runAsNonRoot must be true")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problem(where, "pod securityContext.seccompProfile.type must be RuntimeDefault")

    containers = spec.get("containers", [])
    app = next((c for c in containers if c.get("name") == name), None)
    if app is None:
        problem(where, f"no container named `{name}`")
        return
    cwhere = f"{where}: container {name}"
    ports = {p.get("name"): p.get("containerPort") for p in app.get("ports", [])}
    if str(ports.get("http")) != ann.get("dapr.io/app-port"):
        problem(cwhere, f"containerPort `http` ({ports.get('http')}) differs from dapr.io/app-port")

    env = {e["name"]: e for e in app.get("env", [])}
    for var, annotation in (("DAPR_API_TOKEN", "api-token-secret"), ("APP_API_TOKEN", "app-token-secret")):
        ref = ((env.get(var) or {}).get("valueFrom") or {}).get("secretKeyRef")
        if not ref:
            problem(cwhere, f"{var} must come from a secretKeyRef (the injector gives it to daprd only)")
            continue
        if ref.get("name") != ann.get(f"dapr.io/{annotation}") or ref.get("key") != "token":
            problem(cwhere, f"{var} must read key `token` of the Secret named by dapr.io/{annotation}")
    for e in app.get("env", []):
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            check_secret_ref(f"{cwhere}: env {e['name']}", secrets, ref.get("name"), ref.get("key"))
        elif e["name"] in ("DAPR_API_TOKEN", "APP_API_TOKEN", "JWT_SECRET", "SMTP_URL", "ADMIN_TOKEN") and "value" in e:
            problem(cwhere, f"{e['name']} is a secret and must not be a literal value")

    cm_env = {}
    for ef in app.get("envFrom", []):
        cm_name = (ef.get("configMapRef") or {}).get("name")
        if cm_name:
            cm = by_key.get(("ConfigMap", cm_name))
            if cm is None:
                problem(cwhere, f"envFrom ConfigMap `{cm_name}` is not in the render")
            else:
                cm_env.update(cm.get("data") or {})
    for var in ("APP_PORT", "APP_ID", "PUBSUB_NAME", "STATE_STORE_NAME", "RUST_LOG", "LOG_FORMAT"):
        if var not in cm_env and var not in env:
            problem(cwhere, f"{var} is not set (ConfigMap or env)")
    if cm_env.get("APP_PORT") != ann.get("dapr.io/app-port"):
        problem(cwhere, "APP_PORT in the ConfigMap differs from dapr.io/app-port")
    if cm_env.get("APP_ID") != ann.get("dapr.io/app-id"):
        problem(cwhere, "APP_ID in the ConfigMap differs from dapr.io/app-id")
    if cm_env.get("PUBSUB_NAME") and ("Component", cm_env["PUBSUB_NAME"]) not in by_key:
        problem(cwhere, f"PUBSUB_NAME `{cm_env['PUBSUB_NAME']}` is not a Component of the render")
    if cm_env.get("STATE_STORE_NAME") and ("Component", cm_env["STATE_STORE_NAME"]) not in by_key:
        problem(cwhere, f"STATE_STORE_NAME `{cm_env['STATE_STORE_NAME']}` is not a Component of the render")
    for secret_like in ("TOKEN", "SECRET", "PASSWORD"):
        for var in cm_env:
            if secret_like in var:
                problem(cwhere, f"ConfigMap carries `{var}`, which belongs in a Secret")

    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (app.get(probe) or {}).get("httpGet")
        if not get:
            problem(cwhere, f"{probe} must be an httpGet probe")
            continue
        if get.get("path") != path:
            problem(cwhere, f"{probe} path must be {path}")
        if get.get("port") not in ("http", ports.get("http")):
            problem(cwhere, f"{probe} must target the app port")

    res = app.get("resources") or {}
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(kind) or {}):
                problem(cwhere, f"resources.{kind}.{r} is missing")

    sc = app.get("securityContext") or {}
    if sc.get("allowPrivilegeEscalation") is not False:
        problem(cwhere, "securityContext.allowPrivilegeEscalation must be false")
    if sc.get("readOnlyRootFilesystem") is not True:
        problem(cwhere, "securityContext.readOnlyRootFilesystem must be true")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        problem(cwhere, "securityContext.capabilities.drop must contain ALL")
    if not any(m.get("mountPath") == "/tmp" for m in app.get("volumeMounts", [])):
        problem(cwhere, "a writable /tmp (emptyDir) is needed with a read-only root filesystem")

    if not any(d.get("kind") == "Service" and selects(d["spec"].get("selector"), labels) for d in docs):
        problem(where, "no Service selects its pods")
    scaled = any(
        d.get("kind") in ("HorizontalPodAutoscaler", "ScaledObject")
        and d["spec"].get("scaleTargetRef", {}).get("name") == name
        for d in docs
    )
    if not scaled:
        problem(where, "neither an HPA nor a KEDA ScaledObject scales it")
    hpas = [d for d in docs if d.get("kind") == "HorizontalPodAutoscaler" and d["spec"]["scaleTargetRef"]["name"] == name]
    if len(hpas) + sum(1 for d in docs if d.get("kind") == "ScaledObject" and d["spec"]["scaleTargetRef"]["name"] == name) > 1:
        problem(where, "more than one autoscaler targets it")
    for hpa in hpas:
        if hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
            problem(where, "HPA minReplicas is above maxReplicas")
    if not any(d.get("kind") == "PodDisruptionBudget" and selects(d["spec"].get("selector"), labels) for d in docs):
        problem(where, "no PodDisruptionBudget covers its pods")
    if "replicas" in dep["spec"] and hpas:
        problem(where, "spec.replicas is set although an HPA owns the replica count")


def check_pubsub(where, comp, expect_brokers_secure=None):
    spec = comp.get("spec", {})
    if spec.get("type") != "pubsub.kafka":
        problem(where, "todo-pubsub must be pubsub.kafka (Redpanda speaks the Kafka API)")
    md = metadata_map(comp)
    for forbidden in ("consumerGroup", "consumerID"):
        if forbidden in md:
            problem(where, f"`{forbidden}` must be unset: the group must be each app's id (fan-out)")
    if "brokers" not in md:
        problem(where, "`brokers` is required")
    auth = (md.get("authType") or {}).get("value")
    if auth not in ("none", "password", "mtls", "oidc", "certificate", "awsiam"):
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
    if state is None:
        problem(render, "Component todo-state is missing")
    else:
        check_statestore(f"{render}: Component/todo-state", state)
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
        for comp_name, needed in (("todo-pubsub", ("inbound", "outbound")), ("todo-state", ("outbound",))):
            for direction in needed:
                refs = (comps.get(comp_name) or {}).get(direction) or {}
                if not refs.get("retry") or not refs.get("circuitBreaker"):
                    problem(where, f"{comp_name} {direction} needs a retry and a circuit breaker")
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


def rule_ports(rule):
    return {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", []) or []}


def check_network_policies(render, docs):
    pols = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    where = f"{render}: NetworkPolicy"
    deny = [p for p in pols if not p["spec"].get("ingress") and not p["spec"].get("egress")
            and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}]
    if not deny:
        problem(where, "a default-deny policy (Ingress and Egress) for the todo pods is missing")

    def from_namespace(rule, namespace):
        peers = rule.get("from", rule.get("to")) or []
        return any(
            ((peer.get("namespaceSelector") or {}).get("matchLabels") or {}).get("kubernetes.io/metadata.name") == namespace
            for peer in peers
        )

    def allowed(direction, pod_labels, proto, port, namespace=None):
        for p in pols:
            if not selects(p["spec"].get("podSelector"), pod_labels):
                continue
            for rule in p["spec"].get(direction, []) or []:
                if (proto, port) in rule_ports(rule) and (namespace is None or from_namespace(rule, namespace)):
                    return True
        return False

    svc = {"app.kubernetes.io/part-of": "todo", "app.kubernetes.io/component": "service"}
    for app_name in APPS:
        labels = {**svc, "app.kubernetes.io/name": app_name}
        for proto in ("UDP", "TCP"):
            if not allowed("egress", labels, proto, 53):
                problem(where, f"{app_name} cannot reach DNS ({proto} 53)")
        for port, what in ((50001, "Dapr sentry"), (6500, "Dapr operator"), (50005, "Dapr placement"),
                           (50006, "Dapr scheduler"), (6379, "Redis"), (9093, "Redpanda")):
            if not allowed("egress", labels, "TCP", port):
                problem(where, f"{app_name}'s sidecar cannot reach {what} (TCP {port})")
    if not allowed("ingress", {**svc, "app.kubernetes.io/name": "task-api"}, "TCP", 8080, "ingress-nginx"):
        problem(where, "task-api's port 8080 is not reachable from the ingress controller")
    for port in (587, 465):
        if not allowed("egress", {**svc, "app.kubernetes.io/name": "email-worker"}, "TCP", port):
            problem(where, f"email-worker cannot reach SMTP port {port}")
    if not allowed("ingress", {**svc, "app.kubernetes.io/name": "audit-logger"}, "TCP", 50002):
        problem(where, "audit-logger's sidecar does not accept invocations on 50002")
    for app_name in ("email-worker", "reminder-scheduler", "audit-logger"):
        if any(allowed("ingress", {**svc, "app.kubernetes.io/name": app_name}, "TCP", port, "ingress-nginx")
               for port in APPS.values()):
            problem(where, f"{app_name} must not accept the ingress controller's traffic")
    if allowed("egress", {**svc, "app.kubernetes.io/name": "task-api"}, "TCP", 587):
        problem(where, "only email-worker may reach SMTP")


# ---------------------------------------------------------------------------------------------
# subscriptions


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


# ---------------------------------------------------------------------------------------------
# compose


def cmd_compose(compose_config, components_dir, base_dapr_dir):
    comps = {}
    for fname in sorted(os.listdir(components_dir)):
        if fname.endswith(".yaml"):
            for d in load_all(os.path.join(components_dir, fname)):
                comps[d["metadata"]["name"]] = (os.path.join(components_dir, fname), d)
    base = {}
    for fname in ("pubsub.yaml", "statestore.yaml"):
        for d in load_all(os.path.join(base_dapr_dir, fname)):
            base[d["metadata"]["name"]] = d
    for name in ("todo-pubsub", "todo-state"):
        if name not in comps:
            problem(components_dir, f"Component {name} is missing")
            continue
        path, comp = comps[name]
        where = f"{path}: Component/{name}"
        if name == "todo-pubsub":
            check_pubsub(where, comp)
        else:
            check_statestore(where, comp)
            store = comp.get("auth", {}).get("secretStore")
            if store and store not in comps:
                problem(where, f"auth.secretStore `{store}` is not a component in {components_dir}")
        b = base.get(name)
        if b is not None:
            if b["spec"]["type"] != comp["spec"]["type"]:
                problem(where, "type differs from the Kubernetes component")
            same_keys = ("allowedTopics", "initialOffset", "authType", "keyPrefix")
            bm, cm = metadata_map(b), metadata_map(comp)
            for k in same_keys:
                if (bm.get(k) or {}).get("value") != (cm.get(k) or {}).get("value"):
                    problem(where, f"`{k}` differs from deploy/dapr/{'pubsub' if name == 'todo-pubsub' else 'statestore'}.yaml")

    cfg = load_all(compose_config)[0]
    if "name" in cfg:
        problem(compose_config, "top-level `name:` is rejected by docker-compose v1")
    services = cfg.get("services", {})
    for app, port in APPS.items():
        if app not in services:
            problem(compose_config, f"service `{app}` is missing")
            continue
        env = services[app].get("environment") or {}
        if str(env.get("APP_PORT")) != str(port) or env.get("APP_ID") != app:
            problem(compose_config, f"{app}: APP_PORT/APP_ID should be {port}/{app}")
        sidecar = services.get(f"{app}-dapr")
        if sidecar is None:
            problem(compose_config, f"service `{app}-dapr` (its daprd) is missing")
            continue
        if sidecar.get("network_mode") != f"service:{app}":
            problem(compose_config, f"{app}-dapr must use network_mode service:{app}")
        if not str(sidecar.get("image", "")).startswith("daprio/daprd:1.16."):
            problem(compose_config, f"{app}-dapr must run daprio/daprd:1.16.x")
        cmd = sidecar.get("command") or []
        args = dict(zip(cmd, cmd[1:]))
        if args.get("--app-id") != app or args.get("--app-port") != str(port):
            problem(compose_config, f"{app}-dapr: --app-id/--app-port should be {app}/{port}")
        if "--enable-app-health-check" not in cmd or args.get("--app-health-check-path") != "/healthz":
            problem(compose_config, f"{app}-dapr: app health check on /healthz is not enabled")
        denv = sidecar.get("environment") or {}
        for var in ("DAPR_API_TOKEN", "APP_API_TOKEN"):
            if denv.get(var) != env.get(var):
                problem(compose_config, f"{app}: {var} differs between the app and its daprd")
    for infra in ("redpanda", "redis", "mailpit", "topic-init"):
        if infra not in services:
            problem(compose_config, f"service `{infra}` is missing")


# ---------------------------------------------------------------------------------------------
# topics


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


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "split":
        cmd_split(*args)
    elif cmd == "render":
        secrets = None
        if "--secrets" in args:
            i = args.index("--secrets")
            secrets = args[i + 1]
            args = args[:i] + args[i + 2:]
        cmd_render(args[0], secrets)
    elif cmd == "subscriptions":
        cmd_subscriptions(*args)
    elif cmd == "compose":
        cmd_compose(*args)
    elif cmd == "topics":
        cmd_topics(*args)
    else:
        print(f"unknown sub-command {cmd}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
