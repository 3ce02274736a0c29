-- Register an engine's event subscriptions: replace its set of patterns, and raise the
-- version when anything changed, so publishers refresh their cached matcher.
-- KEYS[1]  the registry hash (field '<engine> <pattern>')   KEYS[2] the version counter
-- ARGV[1]  engine   ARGV[2..] its patterns
-- Returns the version after the call.
local engine = ARGV[1]
local prefix = engine .. ' '
local wanted = {}
for i = 2, #ARGV do wanted[prefix .. ARGV[i]] = true end
local changed = false
local fields = redis.call('HKEYS', KEYS[1])
for _, f in ipairs(fields) do
  if string.sub(f, 1, #prefix) == prefix then
    if wanted[f] then wanted[f] = nil else
      redis.call('HDEL', KEYS[1], f)
      changed = true
    end
  end
end
for f, _ in pairs(wanted) do
  redis.call('HSET', KEYS[1], f, '1')
  changed = true
end
if changed then return redis.call('INCR', KEYS[2]) end
return tonumber(redis.call('GET', KEYS[2]) or '0')
