-- The room as it is, atomically: epoch (set once per life of the data), counter, last
-- stream id, and the presence hash of claimed members.
-- ARGV: prefix, epoch candidate.
local P, candidate = ARGV[1], ARGV[2]
redis.call('SET', P .. ':epoch', candidate, 'NX')
local epoch = redis.call('GET', P .. ':epoch')
local n = tonumber(redis.call('GET', P .. ':seq') or '0')
local last = redis.call('XREVRANGE', P .. ':log', '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return {epoch, n, id, redis.call('HGETALL', P .. ':presence')}
