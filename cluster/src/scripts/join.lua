-- Claims the name and appends the join (or rejoin), or refuses (0) if another member holds
-- the name. A rejoin of a member that still holds its claim appends nothing. A member's
-- earlier claim under another name is released first, so no name stays claimed by a member
-- that no longer uses it.
-- The outcome is recorded under the node's ticket: the same ticket again (a retry after a
-- lost reply) returns it and changes nothing, so an entry is never appended twice.
-- ARGV: prefix, node, member, name key (S2.2, by the core), name, kind, maxlen, ticket.
local P, node, member, key, name, kind, maxlen, ticket =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local outcomes = P .. ':outcome:' .. node
local known = redis.call('HGET', outcomes, ticket)
if known then return tonumber(known) end
local function run()
  local who = node .. '\n' .. member
  local holder = redis.call('HGET', P .. ':names', key)
  if holder and holder ~= who then return 0 end
  if holder == who then return 1 end
  local earlier = redis.call('HGET', P .. ':presence', who)
  if earlier then
    local _, old = string.match(earlier, '^([^\n]*)\n([^\n]*)\n')
    if old and redis.call('HGET', P .. ':names', old) == who then
      redis.call('HDEL', P .. ':names', old)
    end
  end
  local n = redis.call('INCR', P .. ':seq')
  redis.call('HSET', P .. ':names', key, who)
  redis.call('HSET', P .. ':presence', who, n .. '\n' .. key .. '\n' .. name)
  redis.call('SADD', P .. ':nodes', node)
  redis.call('XADD', P .. ':log', 'MAXLEN', '~', maxlen, '*',
    'n', n, 'node', node, 'member', member, 'kind', kind, 'name', name)
  return 1
end
local outcome = run()
redis.call('HSET', outcomes, ticket, outcome)
redis.call('HDEL', outcomes, ticket - 4096)
return outcome
