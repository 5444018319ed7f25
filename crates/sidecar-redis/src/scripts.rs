//! Lua scripts of the state store, with the accept/reject rules of daprd's `state.redis`.
//!
//! Hash layout: `data` (value bytes), `version` (the ETag, bumped by `HINCRBY`), and
//! `first-write` (`0`, present once the key was saved with `concurrency: first-write`).

/// KEYS[1] = key; ARGV[1] = expected version (`"0"` = no etag / last-write);
/// ARGV[2] = data; ARGV[3] = `"0"` when the write is first-write (absent in transactions, as in
/// daprd, so transactional upserts never set the marker).
///
/// A key holding another type is replaced. The write happens when the key has no version yet,
/// when the stored version equals ARGV[1], or when no etag was given and the key never carried the
/// first-write marker; otherwise the script raises `failed to set key <key>`.
pub const SET: &str = r#"
local key = KEYS[1]
local current = redis.pcall("HGET", key, "version")
if type(current) == "table" and current.err then
  redis.call("DEL", key)
  current = false
end
local marker = redis.call("HGET", key, "first-write")
local expected = ARGV[1]
local allowed = (not current) or current == "" or current == expected
  or (expected == "0" and not marker)
if not allowed then
  return redis.error_reply("ERR failed to set key " .. key)
end
redis.call("HSET", key, "data", ARGV[2])
if ARGV[3] == "0" then
  redis.call("HSET", key, "first-write", "0")
end
return redis.call("HINCRBY", key, "version", 1)
"#;

/// KEYS[1] = key; ARGV[1] = etag (`"0"` = none). Deletes when the key has no version, the version
/// matches, or no etag was given; otherwise raises `failed to delete <key>`.
pub const DELETE: &str = r#"
local key = KEYS[1]
local current = redis.pcall("HGET", key, "version")
if type(current) == "table" and current.err then
  current = false
end
if (not current) or current == "" or current == ARGV[1] or ARGV[1] == "0" then
  return redis.call("DEL", key)
end
return redis.error_reply("ERR failed to delete " .. key)
"#;
