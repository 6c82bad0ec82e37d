-- For every node whose liveness has expired (and `retiring`, if given), appends a leave for
-- each of its members in join order and drops its claims. Atomic, so every member leaves
-- exactly once however many nodes reap at the same time.
-- KEYS: alive, presence, names, seq, log. ARGV: maxlen, retiring node id (or '').
local alive, presence, names, seq, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local maxlen, retiring = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', alive, '-inf', now)
if retiring ~= '' then table.insert(dead, retiring) end
local reaped, done = 0, {}
for _, node in ipairs(dead) do
  if not done[node] then
    done[node] = true
    local all = redis.call('HGETALL', presence)
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
      redis.call('HDEL', presence, m[5])
      if redis.call('HGET', names, m[3]) == m[5] then redis.call('HDEL', names, m[3]) end
      local n = redis.call('INCR', seq)
      redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*',
        'n', n, 'node', node, 'member', m[2], 'kind', 'leave', 'name', m[4])
      reaped = reaped + 1
    end
    redis.call('ZREM', alive, node)
  end
end
return reaped
