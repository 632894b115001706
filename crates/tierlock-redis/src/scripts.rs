//! The Lua scripts: every change to a lock's keys is one script, so it is atomic on the server.
//!
//! Scripts are sent with `EVALSHA` (and `EVAL` once after a `NOSCRIPT`, e.g. after a server
//! restart). Times come from the server's `TIME`, never from the client: hosts need not agree on
//! the time, and every comparison is made by one clock. Integers that Lua would print in
//! exponent form (times in µs) are built from `TIME`'s strings, never converted from Lua
//! numbers.
//!
//! Waiter marks are members of the name's `wait` sorted set, `PROVIDER_ID:SEQ`, scored by their
//! expiry in server milliseconds; "others" below means live marks (score > now) whose member
//! does not start with the calling provider's id.

use std::sync::LazyLock;

use redis::Script;

/// Shared Lua helpers, prepended to scripts that need them.
const HELPERS: &str = r"
local function now_ms(t)
  return t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
end
local function others(key, mine, now)
  local n = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')) do
    if string.sub(m, 1, string.len(mine)) ~= mine then n = n + 1 end
  end
  return n
end
";

/// Acquire. KEYS: lock, fence, waiters. ARGV: owner token, ttl ms, `1` if the attempt must
/// yield to other providers' live waiters (a one-shot attempt), own mark prefix, fence idle
/// expiry ms.
///
/// Returns `{1, fence}` when acquired — also when the key already holds this very token: a retry
/// of an attempt whose reply was lost with its connection (nobody else can have taken a token
/// since, so the counter still holds ours); `{0, pttl}` when held (`pttl` of the holder's key,
/// `-1` if it has no expiry); `{0, -3}` when free but yielded to waiters.
///
/// The fencing token is `max(INCR fence, now in µs)`: strictly increasing while the counter
/// lives, and still larger than every earlier token if the counter is lost (expired after
/// a day idle, a restart without persistence, eviction), since no earlier token ran ahead of
/// the server's clock by more than the few acquisitions one µs can hold. It is computed before
/// the `SET`, so a failing `INCR` (a counter that is not a number) leaves nothing behind.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HELPERS}{}",
        r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local t = redis.call('TIME')
if ARGV[3] == '1' and others(KEYS[3], ARGV[4], now_ms(t)) > 0 then
  return {0, -3}
end
if current then
  return {0, redis.call('PTTL', KEYS[1])}
end
local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
local fence = redis.call('INCR', KEYS[2])
if fence < floor then
  redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])))
  fence = floor
end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return {1, fence}
"
    ))
});

/// Release (compare-and-delete). KEYS: lock. ARGV: owner token, channel.
///
/// Returns 1 if the key held the token (deleted, and the release published on the channel);
/// 0 if there is no key (expired, or deleted by an earlier run of this very release); -1 if
/// another token holds it (taken over). Only 1 touches anything.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'free')
  return 1
end
if current then return -1 end
return 0
",
    )
});

/// Renew (compare-and-extend). KEYS: lock, waiters. ARGV: owner token, ttl ms, own mark prefix.
///
/// Returns -1 if the key does not hold the token (lost), else the number of other waiters.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HELPERS}{}",
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return others(KEYS[2], ARGV[3], now_ms(redis.call('TIME')))
"
    ))
});

/// Probe (read-only). KEYS: waiters. ARGV: own mark prefix. Returns the number of other
/// waiters.
pub(crate) static PROBE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HELPERS}{}",
        r"
return others(KEYS[1], ARGV[1], now_ms(redis.call('TIME')))
"
    ))
});

/// Mark (a waiter's interest, added or refreshed). KEYS: waiters. ARGV: member, ttl ms.
///
/// Drops expired marks, scores the member `now + ttl`, and makes the set outlive its longest
/// mark. Returns 1.
pub(crate) static MARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HELPERS}{}",
        r"
local now = now_ms(redis.call('TIME'))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], tonumber(now) + tonumber(ARGV[2]), ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"
    ))
});
