#!lua flags=allow-oom
-- Acknowledge and delete finished entries, but only those this consumer still owns.
-- allow-oom: a worker keeps draining (reading, acking) when the server is out of memory.
-- KEYS[1..4]  tier streams: critical, high, normal, low
-- ARGV[1]     group            ARGV[2] consumer
-- ARGV[3..6]  how many ids follow for each tier, in tier order
-- ARGV[7..]   the ids
-- Returns {taken, gone}: ids another consumer owns now (refused: they run again there),
-- and ids no longer pending at all (already acked, e.g. by a retried call whose first
-- reply was lost; or lost with the server's data).
local taken, gone = {}, {}
local pos = 7
for i = 1, 4 do
  local n = tonumber(ARGV[i + 2])
  local owned = {}
  for j = pos, pos + n - 1 do
    local id = ARGV[j]
    local p = redis.call('XPENDING', KEYS[i], ARGV[1], id, id, 1)
    if #p == 0 then gone[#gone + 1] = id
    elseif p[1][2] == ARGV[2] then owned[#owned + 1] = id
    else taken[#taken + 1] = id end
  end
  pos = pos + n
  if #owned > 0 then
    redis.call('XACK', KEYS[i], ARGV[1], unpack(owned))
    redis.call('XDEL', KEYS[i], unpack(owned))
  end
end
return {taken, gone}
