-- The room as it is, atomically: epoch (set once per life of the data), counter, last
-- stream id, the presence hash of claimed members, and the number of the last chat line.
-- KEYS: epoch, seq, log, presence, lines. ARGV: epoch candidate.
-- The candidate gets Redis's clock, so that a process that set the epoch of data Redis has
-- since lost never sets the same one again: line ids must not come back (E5).
local epoch_key, seq, log, presence, lines = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local t = redis.call('TIME')
redis.call('SET', epoch_key, ARGV[1] .. '@' .. t[1] .. '.' .. t[2], 'NX')
local epoch = redis.call('GET', epoch_key)
local n = tonumber(redis.call('GET', seq) or '0')
local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
local line = tonumber(redis.call('GET', lines) or '0')
return {epoch, n, id, redis.call('HGETALL', presence), line}
