#!lua flags=allow-oom
-- Acknowledge and delete finished entries, but only those this consumer still owns.
-- KEYS[1..4]  tier streams: critical, high, normal, low
-- ARGV[1]     group            ARGV[2] consumer
-- ARGV[3..6]  how many ids follow for each tier, in tier order
-- ARGV[7..]   the ids
-- Returns the ids that were refused because another consumer owns them (or nobody does).
local refused = {}
local pos = 7
for i = 1, 4 do
  local n = tonumber(ARGV[i + 2])
  local owned = {}
  for j = pos, pos + n - 1 do
    local id = ARGV[j]
    local p = redis.call('XPENDING', KEYS[i], ARGV[1], id, id, 1, ARGV[2])
    if #p == 1 then owned[#owned + 1] = id else refused[#refused + 1] = id end
  end
  pos = pos + n
  if #owned > 0 then
    redis.call('XACK', KEYS[i], ARGV[1], unpack(owned))
    redis.call('XDEL', KEYS[i], unpack(owned))
  end
end
return refused
