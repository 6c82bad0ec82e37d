-- For every node whose liveness key is gone (and `retiring`, if given), appends a leave for
-- each of its members in join order and drops its claims. Atomic, so every member leaves
-- exactly once however many nodes reap at the same time.
-- ARGV: prefix, maxlen, retiring node id (or '').
local P, maxlen, retiring = ARGV[1], ARGV[2], ARGV[3]
local reaped = 0
for _, node in ipairs(redis.call('SMEMBERS', P .. ':nodes')) do
  if node == retiring or redis.call('EXISTS', P .. ':node:' .. node) == 0 then
    local all = redis.call('HGETALL', P .. ':presence')
    local mine = {}
    for i = 1, #all, 2 do
      local nd, member = string.match(all[i], '^(.*)\n([^\n]*)$')
      if nd == node then
        local order, key, name = string.match(all[i + 1], '^([^\n]*)\n([^\n]*)\n(.*)$')
        table.insert(mine, {tonumber(order), member, key, name, all[i]})
      end
    end
    table.sort(mine, function(a, b) return a[1] < b[1] end)
    for _, m in ipairs(mine) do
      redis.call('HDEL', P .. ':presence', m[5])
      if redis.call('HGET', P .. ':names', m[3]) == m[5] then redis.call('HDEL', P .. ':names', m[3]) end
      local n = redis.call('INCR', P .. ':seq')
      redis.call('XADD', P .. ':log', 'MAXLEN', '~', maxlen, '*',
        'n', n, 'node', node, 'member', m[2], 'kind', 'leave', 'name', m[4])
      reaped = reaped + 1
    end
    redis.call('SREM', P .. ':nodes', node)
    redis.call('DEL', P .. ':outcome:' .. node)
    if node == retiring then redis.call('DEL', P .. ':node:' .. node) end
  end
end
return reaped
