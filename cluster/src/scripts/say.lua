-- Appends a message of a member that holds a claim, or refuses (0). Once per ticket
-- (once.lua). The message gets the next number among the room's chat lines and its
-- speaker's name, so that any node can replay it under the same id (E5).
-- KEYS: presence, seq, log, outcomes of the node, lines. ARGV: node, member, text, maxlen, ticket.
local presence, seq, log, outcomes, lines = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local node, member, text, maxlen, ticket = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
return once(outcomes, ticket, function()
  local claim = redis.call('HGET', presence, node .. '\n' .. member)
  if not claim then return 0 end
  local _, _, name = string.match(claim, '^([^\n]*)\n([^\n]*)\n(.*)$')
  local line = redis.call('INCR', lines)
  local n = redis.call('INCR', seq)
  redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*',
    'n', n, 'node', node, 'member', member, 'kind', 'say', 'text', text,
    'line', line, 'name', name or '')
  return 1
end)
