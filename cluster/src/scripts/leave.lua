-- Drops a member's claim and appends its leave; nothing (0) if it holds none (already
-- reaped). The outcome is recorded under the node's ticket, as in join.lua.
-- ARGV: prefix, node, member, maxlen, ticket.
local P, node, member, maxlen, ticket = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local outcomes = P .. ':outcome:' .. node
local known = redis.call('HGET', outcomes, ticket)
if known then return tonumber(known) end
local outcome = 0
local who = node .. '\n' .. member
local p = redis.call('HGET', P .. ':presence', who)
if p then
  local _, key, name = string.match(p, '^([^\n]*)\n([^\n]*)\n(.*)$')
  redis.call('HDEL', P .. ':presence', who)
  if redis.call('HGET', P .. ':names', key) == who then redis.call('HDEL', P .. ':names', key) end
  local n = redis.call('INCR', P .. ':seq')
  redis.call('XADD', P .. ':log', 'MAXLEN', '~', maxlen, '*',
    'n', n, 'node', node, 'member', member, 'kind', 'leave', 'name', name)
  outcome = 1
end
redis.call('HSET', outcomes, ticket, outcome)
redis.call('HDEL', outcomes, ticket - 4096)
return outcome
