#!/usr/bin/env python3
"""Offline checks of the deployment that a schema cannot express.

Used by scripts/check-deploy.sh. Sub-commands:

  split RENDER OUTDIR
      Splits a rendered `kubectl kustomize` output into OUTDIR/native.yaml (the objects that
      kubernetes-validate knows) and one file per custom object under OUTDIR/<Kind>/, so each
      can be checked against its JSON Schema.
  render RENDER [--secrets FILE] [--label NAME]
      Cross-checks one rendered overlay: the dapr.io/* annotations against the app container,
      ConfigMap, Secrets, probes, security context, Service/HPA/PDB, the Dapr resources and the
      network policies. FILE supplies the Secrets when the overlay does not generate them.
  subscriptions DIR
      The declarative subscriptions against the consumer table.
  compose COMPOSE_CONFIG COMPONENTS_DIR BASE_DAPR_DIR [--label NAME]
      The compose stack (output of `docker-compose config`) and its components against the
      Kubernetes ones.
  topics TOPICS_CONF
      The topic list against the topics the services use.

Every problem is printed as `<file>: <object>: <problem>`; the exit status is 1 if any.
"""

import os
import sys

import yaml

from checks.common import CUSTOM_GROUPS, load_all, problems
from checks.compose import cmd_compose
from checks.dapr import cmd_subscriptions, cmd_topics
from checks.render import cmd_render


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


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    # --label NAME: how to name the first file in messages (a rendering lives in a temp dir).
    label = None
    if "--label" in args:
        i = args.index("--label")
        label = args[i + 1]
        args = args[:i] + args[i + 2:]
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
        if label and args:
            p = p.replace(args[0], label)
        print(f"  {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
