-- Runs an append once per ticket (K4), prepended to join.lua, say.lua and leave.lua: the
-- outcome of `run` is recorded under the node's ticket in `outcomes` (the last 4,096 kept,
-- the hash expiring an hour after the node's last append), and the same ticket again
-- returns it without running anything.
local function once(outcomes, ticket, run)
  local known = redis.call('HGET', outcomes, ticket)
  if known then return tonumber(known) end
  local outcome = run()
  redis.call('HSET', outcomes, ticket, outcome)
  redis.call('HDEL', outcomes, ticket - 4096)
  redis.call('PEXPIRE', outcomes, 3600000)
  return outcome
end
