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
-- Ownership: one XPENDING of this consumer's own entries per tier (a worker holds at most
-- its capacity, so n + 1000 of them covers the batch); only an id not among them is
-- looked up alone, to tell another consumer's entry from one no longer pending.
local taken, gone = {}, {}
local pos = 7
for i = 1, 4 do
  local n = tonumber(ARGV[i + 2])
  if n > 0 then
    local mine = {}
    for _, p in ipairs(redis.call('XPENDING', KEYS[i], ARGV[1], '-', '+', n + 1000, ARGV[2])) do
      mine[p[1]] = true
    end
    local owned = {}
    for j = pos, pos + n - 1 do
      local id = ARGV[j]
      if mine[id] then owned[#owned + 1] = id
      else
        local p = redis.call('XPENDING', KEYS[i], ARGV[1], id, id, 1)
        if #p == 0 then gone[#gone + 1] = id
        elseif p[1][2] == ARGV[2] then owned[#owned + 1] = id
        else taken[#taken + 1] = id end
      end
    end
    pos = pos + n
    if #owned > 0 then
      redis.call('XACK', KEYS[i], ARGV[1], unpack(owned))
      redis.call('XDEL', KEYS[i], unpack(owned))
    end
  end
end
return {taken, gone}
