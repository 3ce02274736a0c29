-- Append many messages to one engine's tier streams in one call (a bulk or buffered send).
-- One command instead of one XADD each: the client packs one request and parses one reply.
-- No allow-oom: on a server at maxmemory the first XADD is refused, and as it is the
-- script's first write nothing is written (BusFull).
-- KEYS[1..4]  tier streams: critical, high, normal, low
-- ARGV        pairs: tier index (1..4), envelope
-- Returns the new entry ids, in ARGV order.
local ids = {}
for i = 1, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[tonumber(ARGV[i])], '*', 'envelope', ARGV[i + 1])
end
return ids
