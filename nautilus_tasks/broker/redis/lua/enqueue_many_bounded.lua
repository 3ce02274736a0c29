-- Enqueue a batch with backpressure, all or nothing (a bulk send to an engine with
-- max_backlog): the XADDs happen only if every tier stream the batch writes has room for
-- its whole part of it, XLEN + its messages <= max_backlog; else nothing is written.
-- No allow-oom: on a server at maxmemory the first XADD is refused, and as it is the
-- script's first write nothing is written (BusFull).
-- KEYS[1..4]  tier streams: critical, high, normal, low
-- ARGV[1]     max backlog
-- ARGV[2..]   pairs: tier index (1..4), envelope
-- Returns the new entry ids, in ARGV order; or, when a stream has no room (nothing
-- written), the integer index (1..4) of the first such stream, in tier order.
local max = tonumber(ARGV[1])
local counts = {0, 0, 0, 0}
for i = 2, #ARGV, 2 do
  local tier = tonumber(ARGV[i])
  counts[tier] = counts[tier] + 1
end
for tier = 1, 4 do
  if counts[tier] > 0 and redis.call('XLEN', KEYS[tier]) + counts[tier] > max then
    return tier
  end
end
local ids = {}
for i = 2, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[tonumber(ARGV[i])], '*', 'envelope', ARGV[i + 1])
end
return ids
