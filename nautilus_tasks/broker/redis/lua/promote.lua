-- Move due messages from the delayed set into their tier streams, each exactly once.
-- KEYS[1]     the engine's delayed zset
-- KEYS[2..5]  tier streams: critical, high, normal, low
-- ARGV[1]     the most messages to move in this call
-- Members are '<tier>|<envelope>'. "Due" is judged by Redis TIME, never a worker's clock.
-- Returns {moved, ms until the next due message or -1 if none is left}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tiers = {critical = 2, high = 3, normal = 4, low = 5}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local sep = string.find(member, '|', 1, true)
  local key = KEYS[tiers[string.sub(member, 1, (sep or 1) - 1)] or 4]
  redis.call('XADD', key, '*', 'envelope', string.sub(member, (sep or 0) + 1))
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if #nxt == 2 then wait = math.max(0, tonumber(nxt[2]) - now) end
return {#due, wait}
