# The Python of the FastAPI baseline: a virtualenv in .local/bench-venv with
# crates/task-api/benches/fastapi/requirements.txt (needs python3 with venv and access to PyPI).
# require_bench_venv sets BENCH_PYTHON to its python.

require_bench_venv() {
  if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 is required for the FastAPI baseline (apt-get install python3 python3-venv)" >&2
    exit 1
  fi
  local venv=.local/bench-venv
  local requirements=crates/task-api/benches/fastapi/requirements.txt
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || {
      echo "error: could not create a virtualenv (apt-get install python3-venv)" >&2
      exit 1
    }
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  BENCH_PYTHON="$PWD/$venv/bin/python"
}
