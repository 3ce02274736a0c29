-- Retry: ack and delete the entry and put its next attempt in the delayed set, atomically,
-- but only if this consumer still owns the entry.
-- KEYS[1]  the entry's tier stream        KEYS[2] the engine's delayed zset
-- ARGV[1]  group   ARGV[2] consumer   ARGV[3] entry id
-- ARGV[4]  delay in ms (from Redis TIME)   ARGV[5] delayed member: '<tier>|<envelope>'
-- Returns the due time in epoch ms, or 0 if another consumer owns the entry (nothing done).
local id = ARGV[3]
local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
if #p == 0 then return 0 end
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
redis.call('ZADD', KEYS[2], due, ARGV[5])
redis.call('XACK', KEYS[1], ARGV[1], id)
redis.call('XDEL', KEYS[1], id)
return due
