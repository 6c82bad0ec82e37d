-- Refreshes this node's liveness: its expiry, a TTL from now by Redis's clock, in the room's
-- `alive` set, where a node stays until reaped, so a dead node is found by its score.
-- KEYS: alive. ARGV: node, ttl in milliseconds.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
