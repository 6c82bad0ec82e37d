-- Drops a member's claim and appends its leave; nothing (0) if it holds none (already reaped).
-- ARGV: prefix, node, member, maxlen.
local P, node, member, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local who = node .. '\n' .. member
local p = redis.call('HGET', P .. ':presence', who)
if not p then return 0 end
local _, key, name = string.match(p, '^([^\n]*)\n([^\n]*)\n(.*)$')
redis.call('HDEL', P .. ':presence', who)
if redis.call('HGET', P .. ':names', key) == who then redis.call('HDEL', P .. ':names', key) end
local n = redis.call('INCR', P .. ':seq')
redis.call('XADD', P .. ':log', 'MAXLEN', '~', maxlen, '*',
  'n', n, 'node', node, 'member', member, 'kind', 'leave', 'name', name)
return 1
