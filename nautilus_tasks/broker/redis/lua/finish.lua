#!lua flags=allow-oom
-- Finish entries atomically: for each entry this consumer still owns, run its actions
-- (reply, stored result, callback events, dead letter), then XACK and XDEL it. An entry
-- owned by another consumer is refused whole: none of its actions happen.
-- KEYS[1..4]  tier streams: critical, high, normal, low
-- KEYS[5..]   the keys the actions write (reply streams, result keys, inboxes, dead stream)
-- ARGV[1]     group            ARGV[2] consumer
-- ARGV[3..]   records: tier (1..4), entry id, action count n, then n actions of 4 values:
--             op, key index (into KEYS), payload, ttl ms (0: none). ops:
--               x  XADD key * envelope <payload>, then PEXPIRE key ttl if ttl > 0
--               s  SET key <payload> PX ttl
--               d  dead letter: XADD key * with the JSON object <payload> as fields, the
--                  entry's delivery count as 'deliveries', and its fields as orig:<field>
-- allow-oom: workers keep settling work on a full server; each write (a reply, a dead
-- letter) comes with the XDEL of its entry, so memory use stays about level.
-- Returns {taken, gone}: refused entry ids another consumer owns, and ids no longer pending.
local taken, gone = {}, {}
local pos = 3
local function dead(key, payload, stream, id, deliveries)
  local fields = {}
  for k, v in pairs(cjson.decode(payload)) do
    fields[#fields + 1] = k
    fields[#fields + 1] = v
  end
  fields[#fields + 1] = 'deliveries'
  fields[#fields + 1] = tostring(deliveries)
  local entry = redis.call('XRANGE', stream, id, id)
  if #entry == 1 then
    local orig = entry[1][2]
    for i = 1, #orig, 2 do
      fields[#fields + 1] = 'orig:' .. orig[i]
      fields[#fields + 1] = orig[i + 1]
    end
  end
  redis.call('XADD', key, '*', unpack(fields))
end
while pos <= #ARGV do
  local stream, id, n = KEYS[tonumber(ARGV[pos])], ARGV[pos + 1], tonumber(ARGV[pos + 2])
  pos = pos + 3
  local p = redis.call('XPENDING', stream, ARGV[1], id, id, 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    for _ = 1, n do
      local op, key, payload = ARGV[pos], KEYS[tonumber(ARGV[pos + 1])], ARGV[pos + 2]
      local ttl = tonumber(ARGV[pos + 3])
      if op == 'x' then
        redis.call('XADD', key, '*', 'envelope', payload)
        if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
      elseif op == 's' then
        redis.call('SET', key, payload, 'PX', ttl)
      elseif op == 'd' then
        dead(key, payload, stream, id, p[1][4])
      else
        return redis.error_reply('finish.lua: unknown op ' .. tostring(op))
      end
      pos = pos + 4
    end
    redis.call('XACK', stream, ARGV[1], id)
    redis.call('XDEL', stream, id)
  else
    pos = pos + 4 * n
    if #p == 0 then gone[#gone + 1] = id else taken[#taken + 1] = id end
  end
end
return {taken, gone}
