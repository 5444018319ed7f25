#!/usr/bin/env bash
# Offline checks of everything under deploy/, docker-compose.yml and the Dockerfile.
# Run from the repository root: scripts/check-deploy.sh
#
#   1. yamllint (.yamllint.yaml) on every YAML file of the deployment
#   2. kubectl kustomize of every overlay (dev, prod) and of each with the optional KEDA scaling
#   3. kubernetes-validate --strict on every Kubernetes object of each rendering
#   4. check-jsonschema on every Dapr and KEDA object (deploy/schemas/*.schema.json), including
#      the declarative subscriptions and the compose components, which no overlay renders
#   5. cross-checks a schema cannot express (deploy/schemas/check_rendered.py): annotations vs
#      containers, Secrets, probes, security context, HPA/PDB/Service per Deployment, network
#      policies, the consumer table, compose vs Kubernetes components, the topic list
#   6. docker-compose config -q (with secrets from scripts/compose-env.sh; without any one of
#      them it must fail naming it), plus the Dockerfile's and the topic script's basics
#
# Missing tools are installed (pip: kubernetes-validate check-jsonschema yamllint; apt:
# docker-compose). Exits non-zero on the first failing step, naming the file.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

START=$(date +%s.%N)
FAILED=0

say() { printf '==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; FAILED=1; }
elapsed() { printf '%.1f' "$(echo "$(date +%s.%N) - $1" | bc -l 2>/dev/null || echo 0)"; }
step_start() { STEP_T=$(date +%s.%N); say "$1"; }
step_end() { printf '    (%ss)\n' "$(elapsed "$STEP_T")"; }

# --- tools -----------------------------------------------------------------------------------
need_pip=()
command -v kubernetes-validate >/dev/null 2>&1 || need_pip+=(kubernetes-validate)
command -v check-jsonschema >/dev/null 2>&1 || need_pip+=(check-jsonschema)
command -v yamllint >/dev/null 2>&1 || need_pip+=(yamllint)
python3 -c 'import yaml' >/dev/null 2>&1 || need_pip+=(pyyaml)
if [ ${#need_pip[@]} -gt 0 ]; then
  say "installing ${need_pip[*]} (pip)"
  if ! python3 -m pip install --quiet "${need_pip[@]}"; then
    echo "could not install ${need_pip[*]} with pip; install them and run again" >&2
    exit 1
  fi
  hash -r
  # pyenv installs console scripts behind shims that exist only after a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash >/dev/null 2>&1 || true; fi
  for tool in kubernetes-validate check-jsonschema yamllint; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "$tool was installed but is not on PATH (pip's script directory?); fix PATH and run again" >&2
      exit 1
    fi
  done
fi
if ! command -v docker-compose >/dev/null 2>&1; then
  say "installing docker-compose (apt)"
  if ! { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }; then
    echo "could not install docker-compose with apt-get (are you root?); install it and run again" >&2
    exit 1
  fi
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl is required (kubectl kustomize renders the overlays offline); install it and run again" >&2
  exit 1
fi
command -v bc >/dev/null 2>&1 || elapsed() { echo "?"; }

CHECK=(python3 deploy/schemas/check_rendered.py)
SCHEMAS=deploy/schemas

# --- 1. yamllint -----------------------------------------------------------------------------
step_start "yamllint"
if ! yamllint -c .yamllint.yaml -f parsable --no-warnings deploy docker-compose.yml .yamllint.yaml; then
  fail "yamllint found errors (file:line above)"
fi
step_end

# --- 2. render every overlay -----------------------------------------------------------------
step_start "kubectl kustomize"
declare -A RENDERS
declare -A SECRETS_FOR
for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  out="$WORK/$name.yaml"
  if kubectl kustomize "$overlay" >"$out" 2>"$WORK/err"; then
    RENDERS[$name]=$out
    echo "    $overlay: $(grep -c '^kind:' "$out") objects"
  else
    fail "kubectl kustomize $overlay: $(cat "$WORK/err")"
  fi
  if [ -f "$overlay/secrets.example.yaml" ]; then SECRETS_FOR[$name]="$overlay/secrets.example.yaml"; fi
done
# The optional KEDA scaling, added the way an overlay would add it (as components).
keda_variant() { # name base-overlay components...
  local name=$1 base=$2; shift 2
  local dir="$WORK/overlay-$name"
  mkdir -p "$dir"
  local rel
  rel=$(realpath --relative-to="$dir" "$ROOT/deploy/k8s")
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "namespace: $(awk '/^namespace:/ {print $2}' "deploy/k8s/overlays/$base/kustomization.yaml")"
    echo "resources:"
    echo "  - $rel/overlays/$base"
    echo "components:"
    for c in "$@"; do echo "  - $rel/optional/$c"; done
  } >"$dir/kustomization.yaml"
  if kubectl kustomize "$dir" >"$WORK/$name.yaml" 2>"$WORK/err"; then
    RENDERS[$name]="$WORK/$name.yaml"
    echo "    $base + optional/{$(IFS=,; echo "$*")}: $(grep -c '^kind:' "$WORK/$name.yaml") objects"
  else
    fail "kubectl kustomize of $base with optional $*: $(cat "$WORK/err")"
  fi
  if [ -n "${SECRETS_FOR[$base]:-}" ]; then SECRETS_FOR[$name]=${SECRETS_FOR[$base]}; fi
}
keda_variant dev+keda dev keda
keda_variant prod+keda prod keda keda-sasl
kubectl kustomize deploy/dapr/subscriptions-declarative >"$WORK/subscriptions.yaml" 2>"$WORK/err" \
  || fail "kubectl kustomize deploy/dapr/subscriptions-declarative: $(cat "$WORK/err")"
step_end

# --- 3. Kubernetes objects -------------------------------------------------------------------
step_start "kubernetes-validate --strict (Kubernetes objects; Dapr/KEDA kinds go to step 4)"
# One run over every rendering (the tool's start-up dominates); an error line names the
# rendering (split-<overlay>) and the object. The example Secrets are applied by hand, so they
# are validated too.
native=()
for name in "${!RENDERS[@]}"; do
  split="$WORK/split-$name"
  "${CHECK[@]}" split "${RENDERS[$name]}" "$split"
  native+=("$split/native.yaml")
done
for f in deploy/k8s/overlays/*/secrets.example.yaml; do
  [ -f "$f" ] && native+=("$f")
done
if ! kubernetes-validate --strict --quiet "${native[@]}"; then
  fail "kubernetes-validate: objects above are invalid (split-<overlay> names the rendering)"
fi
step_end

# --- 4. Dapr and KEDA objects against their schemas ------------------------------------------
step_start "check-jsonschema (Dapr Component/Subscription/Resiliency/Configuration, KEDA)"
schema_for() {
  case "$1" in
    Component) echo "$SCHEMAS/dapr-component.schema.json" ;;
    Subscription) echo "$SCHEMAS/dapr-subscription.schema.json" ;;
    Resiliency) echo "$SCHEMAS/dapr-resiliency.schema.json" ;;
    Configuration) echo "$SCHEMAS/dapr-configuration.schema.json" ;;
    ScaledObject) echo "$SCHEMAS/keda-scaledobject.schema.json" ;;
    TriggerAuthentication) echo "$SCHEMAS/keda-triggerauthentication.schema.json" ;;
    *) echo "" ;;
  esac
}
declare -A BY_KIND
for name in "${!RENDERS[@]}"; do
  for kind_dir in "$WORK/split-$name"/*/; do
    [ -d "$kind_dir" ] || continue
    kind=$(basename "$kind_dir")
    for f in "$kind_dir"*.yaml; do BY_KIND[$kind]+="$f "; done
  done
done
# Sources no overlay renders: the declarative subscriptions and the compose components (the
# compose components are also loaded by daprd as they are, so check the files themselves).
for f in deploy/dapr/subscriptions-declarative/*--*.yaml; do BY_KIND[Subscription]+="$f "; done
for f in deploy/compose/components/*.yaml; do BY_KIND[Component]+="$f "; done
BY_KIND[Resiliency]+="deploy/dapr/resiliency.yaml "
BY_KIND[Configuration]+="deploy/dapr/configuration.yaml deploy/compose/configuration.yaml "
for kind in "${!BY_KIND[@]}"; do
  schema=$(schema_for "$kind")
  if [ -z "$schema" ]; then
    fail "no schema for custom kind $kind (add one to $SCHEMAS)"
    continue
  fi
  # shellcheck disable=SC2086
  if ! check-jsonschema --schemafile "$schema" ${BY_KIND[$kind]} >"$WORK/out" 2>&1; then
    cat "$WORK/out" >&2
    fail "check-jsonschema: a $kind does not match $schema (files above; split files are named after the object)"
  else
    echo "    $kind: $(echo "${BY_KIND[$kind]}" | wc -w) objects ok"
  fi
done
step_end

# --- 5. cross-checks -------------------------------------------------------------------------
step_start "cross-checks (deploy/schemas/check_rendered.py)"
for name in "${!RENDERS[@]}"; do
  args=(render "${RENDERS[$name]}" --label "rendering of $name")
  if [ -n "${SECRETS_FOR[$name]:-}" ]; then args+=(--secrets "${SECRETS_FOR[$name]}"); fi
  if ! "${CHECK[@]}" "${args[@]}"; then
    fail "cross-checks of the $name rendering (deploy/k8s/overlays/${name%%+*}) failed (above)"
  fi
done
"${CHECK[@]}" subscriptions deploy/dapr/subscriptions-declarative \
  || fail "deploy/dapr/subscriptions-declarative does not match the consumer table (above)"
"${CHECK[@]}" topics deploy/redpanda/topics.conf || fail "deploy/redpanda/topics.conf (above)"
step_end

# --- 6. compose, Dockerfile, topic script ----------------------------------------------------
step_start "docker-compose config -q, Dockerfile, topic script"
# Every secret is required: with any one of them missing, compose must refuse to render and name
# it. (Not `--env-file /dev/null`: docker-compose refuses a non-regular env file before it reads
# the compose file, so that check would pass whatever the file says.)
scripts/compose-env.sh "$WORK/compose.env" >/dev/null
: >"$WORK/none.env"
if env -i PATH="$PATH" docker-compose --env-file "$WORK/none.env" -f docker-compose.yml config -q >/dev/null 2>&1; then
  fail "docker-compose.yml renders without any secret set"
fi
while IFS='=' read -r name _; do
  case $name in '' | '#'*) continue ;; esac
  grep -v "^$name=" "$WORK/compose.env" >"$WORK/partial.env"
  if env -i PATH="$PATH" docker-compose --env-file "$WORK/partial.env" -f docker-compose.yml config -q \
    >/dev/null 2>"$WORK/err"; then
    fail "docker-compose.yml renders without $name (a default, or scripts/compose-env.sh writes an unused secret)"
  elif ! grep -qF "$name" "$WORK/err"; then
    fail "docker-compose.yml without $name fails without naming it: $(cat "$WORK/err")"
  fi
done <"$WORK/compose.env"
if docker-compose --env-file "$WORK/compose.env" -f docker-compose.yml config -q 2>"$WORK/err"; then
  docker-compose --env-file "$WORK/compose.env" -f docker-compose.yml config >"$WORK/compose.yaml" 2>/dev/null
  "${CHECK[@]}" compose "$WORK/compose.yaml" deploy/compose/components deploy/dapr --label docker-compose.yml \
    || fail "docker-compose.yml / deploy/compose/components (above)"
else
  fail "docker-compose.yml: $(cat "$WORK/err")"
fi
for want in 'ARG SERVICE' 'FROM ${RUST_IMAGE} AS builder' 'rust:1.95-bookworm' \
  'gcr.io/distroless/cc-debian12:nonroot' '--mount=type=cache' 'USER 65532' 'EXPOSE'; do
  grep -qF -- "$want" Dockerfile || fail "Dockerfile: \`$want\` is missing"
done
for want in 'target/' '.git/'; do
  grep -qxF -- "$want" .dockerignore || fail ".dockerignore: \`$want\` is not ignored"
done
sh -n deploy/redpanda/create-topics.sh || fail "deploy/redpanda/create-topics.sh: syntax error"
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck -s sh deploy/redpanda/create-topics.sh || fail "shellcheck deploy/redpanda/create-topics.sh"
fi
step_end

if [ "$FAILED" -ne 0 ]; then
  echo "deployment checks FAILED after $(elapsed "$START")s" >&2
  exit 1
fi
echo "deployment checks passed in $(elapsed "$START")s"
