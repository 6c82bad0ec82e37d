-- Appends a message of a member that holds a claim, or refuses (0). Once per ticket
-- (once.lua).
-- KEYS: presence, seq, log, outcomes of the node. ARGV: node, member, text, maxlen, ticket.
local presence, seq, log, outcomes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local node, member, text, maxlen, ticket = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
return once(outcomes, ticket, function()
  if redis.call('HEXISTS', presence, node .. '\n' .. member) == 0 then return 0 end
  local n = redis.call('INCR', seq)
  redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*',
    'n', n, 'node', node, 'member', member, 'kind', 'say', 'text', text)
  return 1
end)
