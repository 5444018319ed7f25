"""Checks of one service's Deployment against its ConfigMap, Secrets, Service, HPA and PDB."""

from .common import APPS, REQUIRED_ANNOTATIONS, check_secret_ref, problem, selects


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
        elif e["name"] in ("DAPR_API_TOKEN", "APP_API_TOKEN", "JWT_SECRET", "SMTP_URL", "AUDIT_ADMIN_TOKEN", "AUDIT_CHAIN_KEY") and "value" in e:
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
