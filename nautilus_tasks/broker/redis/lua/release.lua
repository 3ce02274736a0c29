-- Remove a consumer from the groups of an engine's streams, only if it holds nothing.
-- KEYS[1..4]  tier streams     KEYS[5] the engine's workers zset
-- ARGV[1]     group            ARGV[2] consumer
-- Returns 1 if removed, 0 if it still holds pending entries (they stay for reclaim).
for i = 1, 4 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local p = redis.call('XPENDING', KEYS[i], ARGV[1], '-', '+', 1, ARGV[2])
    if #p > 0 then return 0 end
  end
end
for i = 1, 4 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[i], ARGV[1], ARGV[2])
  end
end
redis.call('ZREM', KEYS[5], ARGV[2])
return 1
