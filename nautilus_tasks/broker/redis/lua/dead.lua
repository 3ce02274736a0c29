-- Move one entry to the dead-letter stream, if this consumer still owns it.
-- KEYS[1]  the entry's tier stream        KEYS[2] the engine's dead-letter stream
-- ARGV[1]  group   ARGV[2] consumer   ARGV[3] entry id
-- ARGV[4..] field/value pairs describing the failure (reason, error, ...)
-- The original entry's fields are copied as orig:<field>. Returns 1, or 0 if not owned.
local id = ARGV[3]
local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
if #p == 0 then return 0 end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = 'deliveries'
fields[#fields + 1] = tostring(p[1][4])
local entry = redis.call('XRANGE', KEYS[1], id, id)
if #entry == 1 then
  local orig = entry[1][2]
  for i = 1, #orig, 2 do
    fields[#fields + 1] = 'orig:' .. orig[i]
    fields[#fields + 1] = orig[i + 1]
  end
end
redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], id)
redis.call('XDEL', KEYS[1], id)
return 1
