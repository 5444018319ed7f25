#!/usr/bin/env bash
# Installs schemathesis (the version pinned in scripts/openapi/requirements.txt) into the
# virtualenv .local/schemathesis-venv and prints the path of its `schemathesis` command. Does
# nothing but print the path when that version is already there. task-api's OpenAPI conformance
# test (crates/task-api/tests/it/conformance.rs) runs it; needs python3 with venv and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

if ! command -v python3 >/dev/null 2>&1; then
  echo "error: python3 is required for schemathesis (apt-get install python3 python3-venv)" >&2
  exit 1
fi
VENV=.local/schemathesis-venv
REQUIREMENTS=scripts/openapi/requirements.txt
WANTED=$(sed -n 's/^schemathesis==//p' "$REQUIREMENTS")
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || {
    echo "error: could not create a virtualenv (apt-get install python3-venv)" >&2
    exit 1
  }
fi
INSTALLED=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)
if [ "$INSTALLED" != "$WANTED" ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
fi
echo "$PWD/$VENV/bin/schemathesis"
