#include "rl_scripts.h"

const char *const rl_script_name[RL_SCRIPT_COUNT] = {
    "acquire", "renew", "release", "status",
};

/* Acquire: take the key if it is free or already ours (a new term either
 * way), give the term a fencing token that is larger than every earlier one
 * and never below the server clock in microseconds (so tokens still grow
 * after a restart that lost the counter), and tell waiting peers.  On
 * failure return the holder and its PTTL so the caller can retry exactly
 * when the key expires.  Numbers are formatted with %.0f: Lua's tostring
 * would print 1.7e+15.  PUBLISH goes through pcall: a user whose ACL allows
 * no channels must still get a consistent acquire (an error raised after
 * the SET would leave the key set without the caller knowing). */
static const char acquire_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == false or cur == ARGV[1] then\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "  local t = redis.call('TIME')\n"
    "  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "  local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0\n"
    "  local tok = last + 1\n"
    "  if now > tok then tok = now end\n"
    "  redis.call('SET', KEYS[2], string.format('%.0f', tok))\n"
    "  redis.pcall('PUBLISH', ARGV[3], 'A' .. ARGV[1])\n"
    "  return {1, string.format('%.0f', tok)}\n"
    "end\n"
    "return {0, cur, redis.call('PTTL', KEYS[1])}\n";

/* Renew: extend only while the value is still ours.  Returns 1, or the
 * current holder (nil when the key is gone). */
static const char renew_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return {0, cur}\n";

/* Release: delete only our own value and wake the waiting peers. */
static const char release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  redis.pcall('PUBLISH', ARGV[2], 'R' .. ARGV[1])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/* Status: holder (or nil), PTTL, last token issued (or nil). */
static const char status_lua[] =
    "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]),"
    " redis.call('GET', KEYS[2])}\n";

const char *const rl_script_text[RL_SCRIPT_COUNT] = {
    acquire_lua, renew_lua, release_lua, status_lua,
};
