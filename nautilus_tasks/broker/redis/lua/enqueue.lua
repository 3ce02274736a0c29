-- Enqueue with backpressure: XADD only while the tier stream is shorter than max_backlog.
-- KEYS[1]  the tier stream
-- ARGV[1]  max backlog      ARGV[2] the envelope
-- Returns the new entry id, or false when the stream is full (nothing written).
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', 'envelope', ARGV[2])
