"""Checks that the network policies allow what the design needs, and no more than that."""

from .common import APPS, problem, selects


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
