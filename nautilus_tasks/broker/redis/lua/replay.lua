-- Replay one dead letter: put it back in its tier stream and remove it from the dead-letter
-- stream, atomically, only if it is still there. Two replays racing for the same entry
-- therefore add it once.
-- KEYS[1]  the engine's dead-letter stream        KEYS[2] the tier stream to replay into
-- ARGV[1]  the dead entry's id (<ms>-<seq>)        ARGV[2..] field/value pairs of the new entry
-- Returns the new entry's id, or false if the dead entry is gone (replayed or purged).
local dead_id = ARGV[1]
local found = redis.call('XRANGE', KEYS[1], dead_id, dead_id)
if #found == 0 or found[1][1] ~= dead_id then return false end
local new_id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], dead_id)
return new_id
