"""Checks of the docker-compose stack and its components against the Kubernetes ones."""

import os

from .common import APPS, load_all, metadata_map, problem
from .dapr import check_pubsub, check_statestore


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
            # authType is not compared: the Kubernetes file reads it from the Secret, and the
            # compose Redpanda is a plaintext dev broker (authType none).
            same_keys = ("allowedTopics", "initialOffset", "keyPrefix")
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
    tokens = {}
    for app in APPS:
        env = (services.get(app) or {}).get("environment") or {}
        for var in ("DAPR_API_TOKEN", "APP_API_TOKEN"):
            value = env.get(var)
            if value in tokens:
                problem(compose_config, f"{app}: {var} is the same as {tokens[value]}'s; each service needs its own")
            elif value:
                tokens[value] = f"{app} {var}"
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            if host_ip != "127.0.0.1":
                problem(compose_config, f"{name}: port {port} is published beyond 127.0.0.1")
    for infra in ("redpanda", "redis", "mailpit", "topic-init"):
        if infra not in services:
            problem(compose_config, f"service `{infra}` is missing")


# ---------------------------------------------------------------------------------------------
# topics
