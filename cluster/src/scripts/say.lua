-- Appends a message of a member that holds a claim, or refuses (0).
-- ARGV: prefix, node, member, text, maxlen.
local P, node, member, text, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('HEXISTS', P .. ':presence', node .. '\n' .. member) == 0 then return 0 end
local n = redis.call('INCR', P .. ':seq')
redis.call('XADD', P .. ':log', 'MAXLEN', '~', maxlen, '*',
  'n', n, 'node', node, 'member', member, 'kind', 'say', 'text', text)
return 1
