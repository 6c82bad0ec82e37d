-- Drops a member's claim and appends its leave; nothing (0) if it holds none (already
-- reaped). The outcome is recorded under the node's ticket, as in join.lua.
-- KEYS: presence, names, seq, log, outcomes of the node. ARGV: node, member, maxlen, ticket.
local presence, names, seq, log, outcomes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local node, member, maxlen, ticket = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local known = redis.call('HGET', outcomes, ticket)
if known then return tonumber(known) end
local outcome = 0
local who = node .. '\n' .. member
local p = redis.call('HGET', presence, who)
if p then
  local _, key, name = string.match(p, '^([^\n]*)\n([^\n]*)\n(.*)$')
  redis.call('HDEL', presence, who)
  if redis.call('HGET', names, key) == who then redis.call('HDEL', names, key) end
  local n = redis.call('INCR', seq)
  redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*',
    'n', n, 'node', node, 'member', member, 'kind', 'leave', 'name', name)
  outcome = 1
end
redis.call('HSET', outcomes, ticket, outcome)
redis.call('HDEL', outcomes, ticket - 4096)
redis.call('PEXPIRE', outcomes, 3600000)
return outcome
