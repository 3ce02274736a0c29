#!lua flags=allow-oom
-- Priority read of one engine's four tier streams, in one call, never blocking.
-- allow-oom: a worker keeps draining (reading, acking) when the server is out of memory.
-- KEYS[1..4]  tier streams: critical, high, normal, low
-- ARGV[1]     group            ARGV[2] consumer
-- ARGV[3]     count: the most entries to return in all
-- ARGV[4..6]  reserved count for high, normal and low (the anti-starvation share);
--             these are read first, then the rest strictly from critical down.
-- ARGV[7]     "1": leave the critical stream alone (the worker's own blocking read of
--             it is outstanding); if it holds entries not yet delivered to the group,
--             read nothing and return -1, so no lower tier overtakes them.
-- Returns a list of {tier (1..4), reserved (0|1), entries}, entries as XREADGROUP gives
-- them, or -1 (above).
local first = 1
if ARGV[7] == '1' then
  first = 2
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #newest > 0 then
    local delivered = nil
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
      local info = {}
      for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
      if info['name'] == ARGV[1] then delivered = info['last-delivered-id'] end
    end
    if delivered then
      local a1, a2 = string.match(newest[1][1], '(%d+)-(%d+)')
      local b1, b2 = string.match(delivered, '(%d+)-(%d+)')
      a1, a2, b1, b2 = tonumber(a1), tonumber(a2), tonumber(b1), tonumber(b2)
      if a1 > b1 or (a1 == b1 and a2 > b2) then return -1 end
    end
  end
end
local out = {}
local remaining = tonumber(ARGV[3])
local function take(i, n, reserved)
  if n <= 0 then return end
  local res = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', n,
                         'STREAMS', KEYS[i], '>')
  if res and res[1] and #res[1][2] > 0 then
    local entries = res[1][2]
    remaining = remaining - #entries
    out[#out + 1] = {i, reserved, entries}
  end
end
for i = 2, 4 do
  take(i, math.min(tonumber(ARGV[i + 2]), remaining), 1)
end
for i = first, 4 do
  if remaining <= 0 then break end
  take(i, remaining, 0)
end
return out
