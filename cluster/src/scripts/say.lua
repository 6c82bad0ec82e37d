-- Appends a message of a member that holds a claim, or refuses (0). The outcome is recorded
-- under the node's ticket, as in join.lua: a retry never appends the message twice.
-- ARGV: prefix, node, member, text, maxlen, ticket.
local P, node, member, text, maxlen, ticket =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local outcomes = P .. ':outcome:' .. node
local known = redis.call('HGET', outcomes, ticket)
if known then return tonumber(known) end
local outcome = 0
if redis.call('HEXISTS', P .. ':presence', node .. '\n' .. member) == 1 then
  local n = redis.call('INCR', P .. ':seq')
  redis.call('XADD', P .. ':log', 'MAXLEN', '~', maxlen, '*',
    'n', n, 'node', node, 'member', member, 'kind', 'say', 'text', text)
  outcome = 1
end
redis.call('HSET', outcomes, ticket, outcome)
redis.call('HDEL', outcomes, ticket - 4096)
return outcome
