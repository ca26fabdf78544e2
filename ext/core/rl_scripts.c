#include "rl_scripts.h"

#include <string.h>

const char *const rl_script_name[RL_SCRIPT_COUNT] = {
    "acquire", "renew", "release", "status",
};

/* The value stored in a lease key names one term: "<node_id>#<16 hex>",
 * the suffix drawn at random by the engine for each acquisition (see
 * rl_term_idlen).  Renew and release act only on that exact value, so a
 * late or retransmitted command of an earlier term -- or of another object
 * given the same node_id -- can never extend, shorten or delete this one.
 *
 * Acquire: take the key if it is free (or already holds this very term: an
 * earlier attempt of it landed without its reply reaching us), give the
 * term a fencing token larger than every earlier one and never below the
 * server clock in microseconds (so tokens still grow after the counter was
 * lost or expired), and tell waiting peers.  A free key is granted only if
 * the database's marker (KEYS[3], "<TIME us>:<run_id>") is at least one ttl
 * old and was stamped by this very server process: a database that is new,
 * was flushed, or comes from another process (a restart, even from an older
 * snapshot that kept the marker but not the latest acquires; a promoted
 * replica) gets one stamped with the server's TIME and run_id, and refuses
 * grants until a ttl later, by when every holder of a key it forgot has
 * seen its local deadline pass.  The
 * refusal returns the wait in ms so followers come back on time.  A marker
 * in the future (the server clock stepped back) is stamped again.  On a
 * busy key return the holder and its PTTL.  Numbers are formatted with
 * %.0f: Lua's tostring would print 1.7e+15.  PUBLISH goes through pcall: a
 * user whose ACL allows no channels must still get a consistent acquire.
 * KEYS: key, token key, marker.  ARGV: term, ttl ms, channel, token
 * counter retention ms. */
static const char acquire_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == false or cur == ARGV[1] then\n"
    "  local t = redis.call('TIME')\n"
    "  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "  if cur == false then\n"
    "    local rid = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or '?'\n"
    "    local ms, mrid = string.match(redis.call('GET', KEYS[3]) or '', '^(%d+):(%x+)$')\n"
    "    local m = tonumber(ms)\n"
    "    if m == nil or m > now or mrid ~= rid then\n"
    "      redis.call('SET', KEYS[3], string.format('%.0f', now) .. ':' .. rid)\n"
    "      m = now\n"
    "    end\n"
    "    local wait = m + tonumber(ARGV[2]) * 1000 - now\n"
    "    if wait > 0 then\n"
    "      return {2, string.format('%.0f', math.ceil(wait / 1000))}\n"
    "    end\n"
    "  end\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "  local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0\n"
    "  local tok = last + 1\n"
    "  if now > tok then tok = now end\n"
    "  redis.call('SET', KEYS[2], string.format('%.0f', tok), 'PX', ARGV[4])\n"
    "  redis.pcall('PUBLISH', ARGV[3], 'A' .. ARGV[1])\n"
    "  return {1, string.format('%.0f', tok)}\n"
    "end\n"
    "return {0, cur, redis.call('PTTL', KEYS[1])}\n";

/* Renew: extend only while the key still holds this term.  Returns 1, or
 * the current holder (nil when the key is gone). */
static const char renew_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return {0, cur}\n";

/* Release: delete only this term's value and wake the waiting peers.
 * Returns {1, subscribers reached (-1: unknown)} if it was deleted, 0 if the
 * key no longer held this term. */
static const char release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  local n = redis.pcall('PUBLISH', ARGV[2], 'R' .. ARGV[1])\n"
    "  if type(n) ~= 'number' then n = -1 end\n"
    "  return {1, n}\n"
    "end\n"
    "return 0\n";

/* Status: holder (or nil), PTTL, last token issued (or nil). */
static const char status_lua[] =
    "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]),"
    " redis.call('GET', KEYS[2])}\n";

const char *const rl_script_text[RL_SCRIPT_COUNT] = {
    acquire_lua, renew_lua, release_lua, status_lua,
};

size_t rl_term_idlen(const char *v, size_t len)
{
    if (len < RL_TERM_SUFFIX_LEN + 1 || v[len - RL_TERM_SUFFIX_LEN - 1] != '#')
        return len;
    for (size_t i = len - RL_TERM_SUFFIX_LEN; i < len; i++) {
        char c = v[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return len;
    }
    return len - RL_TERM_SUFFIX_LEN - 1;
}

void rl_term_set_suffix(char *suffix, uint64_t r)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = RL_TERM_SUFFIX_LEN - 1; i >= 0; i--, r >>= 4)
        suffix[i] = hex[r & 15];
}
