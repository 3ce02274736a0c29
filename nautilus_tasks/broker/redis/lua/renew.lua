#!lua flags=allow-oom
-- Renew the lease of held entries: reset their idle time with XCLAIM ... JUSTID, which
-- does not raise the delivery count. Only entries this consumer still owns are touched,
-- so a worker that was paused never takes back what another consumer reclaimed.
-- KEYS[1..4]  tier streams: critical, high, normal, low
-- ARGV[1]     group            ARGV[2] consumer
-- ARGV[3..6]  how many ids follow for each tier         ARGV[7..] the ids
-- Returns {lost, gone}: ids another consumer owns now (the lease was lost), and ids no
-- longer pending at all (acked meanwhile, typically by this consumer's own ack batch).
local lost, gone = {}, {}
local pos = 7
for i = 1, 4 do
  local n = tonumber(ARGV[i + 2])
  local owned = {}
  for j = pos, pos + n - 1 do
    local id = ARGV[j]
    local p = redis.call('XPENDING', KEYS[i], ARGV[1], id, id, 1)
    if #p == 0 then gone[#gone + 1] = id
    elseif p[1][2] == ARGV[2] then owned[#owned + 1] = id
    else lost[#lost + 1] = id end
  end
  pos = pos + n
  if #owned > 0 then
    -- unpack() expands fully only as the last argument, so JUSTID goes in the table
    local args = {'XCLAIM', KEYS[i], ARGV[1], ARGV[2], 0}
    for _, id in ipairs(owned) do args[#args + 1] = id end
    args[#args + 1] = 'JUSTID'
    redis.call(unpack(args))
  end
end
return {lost, gone}
