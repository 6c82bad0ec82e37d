-- Claims the name and appends the join (or rejoin), or refuses (0) if another member holds
-- the name. A rejoin of a member that still holds its claim appends nothing.
-- ARGV: prefix, node, member, name key (S2.2, lowercased by the core), name, kind, maxlen.
local P, node, member, key, name, kind, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local who = node .. '\n' .. member
local holder = redis.call('HGET', P .. ':names', key)
if holder and holder ~= who then return 0 end
if holder == who then return 1 end
local n = redis.call('INCR', P .. ':seq')
redis.call('HSET', P .. ':names', key, who)
redis.call('HSET', P .. ':presence', who, n .. '\n' .. key .. '\n' .. name)
redis.call('SADD', P .. ':nodes', node)
redis.call('XADD', P .. ':log', 'MAXLEN', '~', maxlen, '*',
  'n', n, 'node', node, 'member', member, 'kind', kind, 'name', name)
return 1
