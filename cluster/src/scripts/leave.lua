-- Drops a member's claim and appends its leave; nothing (0) if it holds none (already
-- reaped). Once per ticket (once.lua).
-- KEYS: presence, names, seq, log, outcomes of the node. ARGV: node, member, maxlen, ticket.
local presence, names, seq, log, outcomes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local node, member, maxlen, ticket = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
return once(outcomes, ticket, function()
  local who = node .. '\n' .. member
  local p = redis.call('HGET', presence, who)
  if not p then return 0 end
  local _, key, name = string.match(p, '^([^\n]*)\n([^\n]*)\n(.*)$')
  redis.call('HDEL', presence, who)
  if redis.call('HGET', names, key) == who then redis.call('HDEL', names, key) end
  local n = redis.call('INCR', seq)
  redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*',
    'n', n, 'node', node, 'member', member, 'kind', 'leave', 'name', name)
  return 1
end)
