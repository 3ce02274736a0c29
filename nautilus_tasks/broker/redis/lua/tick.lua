-- Enqueue one tick of a periodic schedule, exactly once whatever the number of schedulers.
-- KEYS[1]  the tick's dedup key, P:{E}:tick:<schedule>:<fire ms>
-- KEYS[2]  the engine's schedules hash, P:{E}:schedules
-- KEYS[3]  the tier stream the task goes to
-- ARGV[1]  schedule id      ARGV[2] the tick's nominal fire time, epoch ms
-- ARGV[3]  dedup expiry, ms ARGV[4] max backlog ('' for none)
-- ARGV[5]  message id       ARGV[6] the envelope
-- The dedup (SET NX PX), the XADD and the bookkeeping happen here together, so a crash
-- cannot separate them. Returns {status, entry id or ''}, status one of:
--   'enqueued'   this call added the task;
--   'duplicate'  another call already took this tick (its dedup key exists);
--   'stale'      a later tick of the schedule was already taken (its dedup key may have
--                expired meanwhile): never go back in time;
--   'full'       the tier stream holds max backlog entries: the tick is taken but dropped.
local sid, fire = ARGV[1], tonumber(ARGV[2])
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then
  redis.call('HINCRBY', KEYS[2], sid .. '|refused', 1)
  return {'duplicate', ''}
end
local last = redis.call('HGET', KEYS[2], sid .. '|fire')
if last and fire <= tonumber(last) then
  redis.call('HINCRBY', KEYS[2], sid .. '|refused', 1)
  return {'stale', ''}
end
redis.call('HSET', KEYS[2], sid .. '|fire', ARGV[2])
if ARGV[4] ~= '' and redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[4]) then
  redis.call('HINCRBY', KEYS[2], sid .. '|full', 1)
  return {'full', ''}
end
local id = redis.call('XADD', KEYS[3], '*', 'envelope', ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], sid .. '|at', now, sid .. '|message', ARGV[5])
redis.call('HINCRBY', KEYS[2], sid .. '|enqueued', 1)
return {'enqueued', id}
