#!lua flags=allow-oom
-- Priority read of one engine's four tier streams, in one call, never blocking.
-- allow-oom: a worker keeps draining (reading, acking) when the server is out of memory.
-- KEYS[1..4]  tier streams: critical, high, normal, low
-- ARGV[1]     group            ARGV[2] consumer
-- ARGV[3]     count: the most entries to return in all
-- ARGV[4..6]  reserved count for high, normal and low (the anti-starvation share);
--             these are read first, then the rest strictly from critical down.
-- Returns a list of {tier (1..4), reserved (0|1), entries}, entries as XREADGROUP gives them.
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
for i = 1, 4 do
  if remaining <= 0 then break end
  take(i, remaining, 0)
end
return out
