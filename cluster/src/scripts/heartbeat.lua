-- Refreshes this node's liveness key and lists it among the room's nodes.
-- ARGV: prefix, node, ttl in milliseconds.
redis.call('SET', ARGV[1] .. ':node:' .. ARGV[2], '1', 'PX', ARGV[3])
redis.call('SADD', ARGV[1] .. ':nodes', ARGV[2])
return 1
