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
