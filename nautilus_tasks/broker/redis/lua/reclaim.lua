#!lua flags=allow-oom
-- Reclaim entries idle past the lease (their worker died or stalled) with XAUTOCLAIM, and
-- dead-letter, as 'poison', those delivered more than max_deliveries times.
-- KEYS[1]  a tier stream        KEYS[2] the engine's dead-letter stream
-- ARGV[1]  group   ARGV[2] consumer   ARGV[3] min idle ms (the lease)   ARGV[4] cursor
-- ARGV[5]  count   ARGV[6] max deliveries   ARGV[7] now, epoch ms (for the dead letter)
-- ARGV[8]  tier label
-- Returns {next cursor, {{id, fields, deliveries}...}, {deleted ids}, {poisoned ids}}.
-- allow-oom: reclaim keeps working on a full server; a poison dead letter is then written
-- past maxmemory (a script flagged allow-oom may write), which is rare and bounded.
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                     'COUNT', ARGV[5])
local out, poisoned = {}, {}
local limit = tonumber(ARGV[6])
for _, e in ipairs(r[2]) do
  local id, fields = e[1], e[2]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  local n = tonumber(p[1][4])
  if n > limit then
    local dead = {'reason', 'poison', 'error_type', 'PoisonMessage',
                  'error', 'delivered ' .. n .. ' times without finishing (max_deliveries '
                           .. limit .. ')',
                  'traceback', '', 'attempts', '', 'dead_at', ARGV[7], 'origin', ARGV[8],
                  'origin_id', id, 'consumer', ARGV[2], 'message_id', '', 'task', '',
                  'deliveries', tostring(n)}
    for i = 1, #fields, 2 do
      dead[#dead + 1] = 'orig:' .. fields[i]
      dead[#dead + 1] = fields[i + 1]
    end
    redis.call('XADD', KEYS[2], '*', unpack(dead))
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    poisoned[#poisoned + 1] = id
  else
    out[#out + 1] = {id, fields, n}
  end
end
return {r[1], out, r[3] or {}, poisoned}
