-- Appends a message of a member that holds a claim, or refuses (0). The outcome is recorded
-- under the node's ticket, as in join.lua: a retry never appends the message twice.
-- KEYS: presence, seq, log, outcomes of the node. ARGV: node, member, text, maxlen, ticket.
local presence, seq, log, outcomes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local node, member, text, maxlen, ticket = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local known = redis.call('HGET', outcomes, ticket)
if known then return tonumber(known) end
local outcome = 0
if redis.call('HEXISTS', presence, node .. '\n' .. member) == 1 then
  local n = redis.call('INCR', seq)
  redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*',
    'n', n, 'node', node, 'member', member, 'kind', 'say', 'text', text)
  outcome = 1
end
redis.call('HSET', outcomes, ticket, outcome)
redis.call('HDEL', outcomes, ticket - 4096)
redis.call('PEXPIRE', outcomes, 3600000)
return outcome
