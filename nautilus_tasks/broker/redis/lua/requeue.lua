-- Hand back entries this consumer holds but has not started: each is appended again to
-- the tail of its stream (a new entry id, the same envelope), then acked and deleted.
-- KEYS[1..4]  tier streams: critical, high, normal, low
-- ARGV[1]     group            ARGV[2] consumer
-- ARGV[3..6]  how many ids follow for each tier         ARGV[7..] the ids
-- Returns the number of entries handed back.
local moved = 0
local pos = 7
for i = 1, 4 do
  local n = tonumber(ARGV[i + 2])
  for j = pos, pos + n - 1 do
    local id = ARGV[j]
    local p = redis.call('XPENDING', KEYS[i], ARGV[1], id, id, 1, ARGV[2])
    if #p == 1 then
      local entry = redis.call('XRANGE', KEYS[i], id, id)
      if #entry == 1 then
        redis.call('XADD', KEYS[i], '*', unpack(entry[1][2]))
        moved = moved + 1
      end
      redis.call('XACK', KEYS[i], ARGV[1], id)
      redis.call('XDEL', KEYS[i], id)
    end
  end
  pos = pos + n
end
return moved
