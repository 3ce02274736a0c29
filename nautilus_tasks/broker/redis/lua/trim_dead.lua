-- Retention of the dead-letter stream, the one place where data leaves on purpose.
-- KEYS[1]  the engine's dead-letter stream
-- ARGV[1]  max length ('' for none)    ARGV[2] max age in ms ('' for none)
-- Returns the number of dead letters removed (by count, then by age: Redis TIME).
local removed = 0
if ARGV[1] ~= '' then
  removed = removed + redis.call('XTRIM', KEYS[1], 'MAXLEN', tonumber(ARGV[1]))
end
if ARGV[2] ~= '' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local minid = tostring(now - tonumber(ARGV[2])) .. '-0'
  removed = removed + redis.call('XTRIM', KEYS[1], 'MINID', minid)
end
return removed
