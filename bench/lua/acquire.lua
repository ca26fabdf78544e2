-- Fallback acquire script for the benchmark, written from the protocol
-- description (used only when redlease._redlease.SCRIPTS is not available).
-- KEYS[1] lease key, KEYS[2] fencing-token counter (same cluster slot)
-- ARGV[1] node_id, ARGV[2] ttl in ms, ARGV[3] channel
-- Returns {1, token} when granted, {0, holder, pttl_ms} otherwise.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
end
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local fence = (tonumber(redis.call('GET', KEYS[2])) or 0) + 1
if now_us > fence then fence = now_us end
-- %.0f: tostring() would print a 16-digit number as 1.7e+15
local text = string.format('%.0f', fence)
redis.call('SET', KEYS[2], text)
return {1, text}
