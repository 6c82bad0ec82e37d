-- Claims the name and appends the join (or rejoin), or refuses (0) if another member holds
-- the name. A rejoin of a member that still holds its claim appends nothing. A member's
-- earlier claim under another name is released first, so no name stays claimed by a member
-- that no longer uses it. The node is listed as alive if it is not (a TTL from now).
-- Once per ticket (once.lua).
-- KEYS: names, presence, alive, seq, log, outcomes of the node.
-- ARGV: node, member, name key (S2.2, by the core), name, kind, maxlen, ticket, ttl in ms.
local names, presence, alive, seq, log, outcomes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local node, member, key, name, kind, maxlen, ticket, ttl =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
return once(outcomes, ticket, function()
  local who = node .. '\n' .. member
  local holder = redis.call('HGET', names, key)
  if holder and holder ~= who then return 0 end
  if holder == who then return 1 end
  local earlier = redis.call('HGET', presence, who)
  if earlier then
    local _, old = string.match(earlier, '^([^\n]*)\n([^\n]*)\n')
    if old and redis.call('HGET', names, old) == who then redis.call('HDEL', names, old) end
  end
  local n = redis.call('INCR', seq)
  redis.call('HSET', names, key, who)
  redis.call('HSET', presence, who, n .. '\n' .. key .. '\n' .. name)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', alive, 'NX', now + ttl, node)
  redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*',
    'n', n, 'node', node, 'member', member, 'kind', kind, 'name', name)
  return 1
end)
