# Shared checks for the scripts: make sure a needed tool is present, installing it from Debian's
# packages when we may (root, apt available), otherwise say exactly what to install.

require_redis_server() {
  if command -v redis-server >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server not found; installing Debian's redis-server package..." >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    # The package starts no server we rely on: tests start their own on random ports.
    return 0
  fi
  echo "error: redis-server is required for the Redis tests." >&2
  echo "       install it with: sudo apt-get install redis-server" >&2
  exit 1
}

# Installs Debian package $1 when we may (root, apt available); returns 1 otherwise.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "$1 not found; installing Debian's $1 package..." >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
    return 0
  fi
  return 1
}

# The Kafka component links librdkafka, built from source by the rdkafka crate: that needs cmake,
# a C/C++ compiler and OpenSSL's headers (TLS and SCRAM).
require_kafka_build_tools() {
  command -v cmake >/dev/null 2>&1 || apt_install cmake || {
    echo "error: cmake is required to build librdkafka (the Kafka pub/sub component)." >&2
    echo "       install it with: sudo apt-get install cmake" >&2
    exit 1
  }
  command -v g++ >/dev/null 2>&1 || apt_install g++ || {
    echo "error: a C++ compiler is required to build librdkafka; sudo apt-get install g++" >&2
    exit 1
  }
  if ! pkg-config --exists openssl 2>/dev/null && [ ! -f /usr/include/openssl/ssl.h ]; then
    apt_install libssl-dev || {
      echo "error: OpenSSL headers are required to build librdkafka; sudo apt-get install libssl-dev" >&2
      exit 1
    }
  fi
  # librdkafka 2.12's CMake build includes curl.h whenever TLS is on, even with curl (OIDC)
  # disabled: only the header is needed, nothing links libcurl.
  if ! pkg-config --exists libcurl 2>/dev/null && [ ! -f /usr/include/curl/curl.h ] &&
    ! compgen -G '/usr/include/*/curl/curl.h' >/dev/null; then
    apt_install libcurl4-openssl-dev || {
      echo "error: libcurl's headers are required to build librdkafka; sudo apt-get install libcurl4-openssl-dev" >&2
      exit 1
    }
  fi
}

# tansu, the Kafka-protocol broker of the Kafka tests and of `run-local.sh --kafka`: built once
# with cargo into a cache outside the repository (about 12 minutes on 2 cores), then reused.
# Prints nothing; sets TANSU_BIN to the binary, which the test harness reads too.
TANSU_VERSION=0.6.0
tansu_root() { printf '%s/todo-dapr/tansu-%s' "${XDG_CACHE_HOME:-$HOME/.cache}" "$TANSU_VERSION"; }

require_tansu() {
  local root
  root="$(tansu_root)"
  if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then
    export TANSU_BIN
    return 0
  fi
  if [ ! -x "$root/bin/tansu" ]; then
    echo "tansu $TANSU_VERSION not found in $root; building it once (about 12 minutes on 2 cores)..." >&2
    mkdir -p "$root"
    # Its own target directory, removed afterwards: only the binary is kept.
    local build
    build="$(mktemp -d)"
    CARGO_TARGET_DIR="$build" cargo install tansu --version "$TANSU_VERSION" --features dynostore \
      --locked --root "$root" >&2
    rm -rf "$build"
  fi
  TANSU_BIN="$root/bin/tansu"
  export TANSU_BIN
}

# The console's browser tests (crates/e2e/browser): Node.js with npm, headless Chromium from
# Debian's `chromium` package (playwright-core downloads no browser of its own here), and the
# test folder's pinned npm packages (package-lock.json), installed with `npm ci` when missing or
# older than the lock file.
require_browser_tests() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs || {
    echo "error: Node.js and npm are required for the console's browser tests." >&2
    echo "       install them with: sudo apt-get install nodejs npm" >&2
    exit 1
  }
  command -v npm >/dev/null 2>&1 || apt_install npm || {
    echo "error: npm is required for the console's browser tests; sudo apt-get install npm" >&2
    exit 1
  }
  local chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
  if [ ! -x "$chromium" ]; then
    apt_install chromium || {
      echo "error: Chromium is required for the console's browser tests ($chromium not found)." >&2
      echo "       install Debian's package with: sudo apt-get install chromium" >&2
      echo "       (or set CHROMIUM_PATH to a Chromium or Chrome binary)" >&2
      exit 1
    }
  fi
  local dir=crates/e2e/browser
  if [ ! -f "$dir/node_modules/.package-lock.json" ] \
    || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "Installing the browser tests' npm packages (npm ci in $dir)..." >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}
