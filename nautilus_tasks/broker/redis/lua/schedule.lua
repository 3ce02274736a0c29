-- Add a message to the delayed set, due at an absolute time or after a delay by Redis TIME.
-- KEYS[1]  the engine's delayed zset
-- ARGV[1]  eta, epoch ms ('' if none)   ARGV[2] delay ms ('' if none)   ARGV[3] member
-- Returns the due time in epoch ms.
local due
if ARGV[1] ~= '' then
  due = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
end
redis.call('ZADD', KEYS[1], due, ARGV[3])
return due
