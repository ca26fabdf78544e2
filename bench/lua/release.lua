-- Fallback release script for the benchmark, written from the protocol
-- description (used only when redlease._redlease.SCRIPTS is not available).
-- KEYS[1] lease key; ARGV[1] node_id, ARGV[2] channel
-- Deletes the key only if we hold it, then wakes the waiting followers.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
