-- The room as it is, atomically: epoch (set once per life of the data), counter, last
-- stream id, and the presence hash of claimed members.
-- KEYS: epoch, seq, log, presence. ARGV: epoch candidate.
local epoch_key, seq, log, presence = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
redis.call('SET', epoch_key, ARGV[1], 'NX')
local epoch = redis.call('GET', epoch_key)
local n = tonumber(redis.call('GET', seq) or '0')
local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return {epoch, n, id, redis.call('HGETALL', presence)}
