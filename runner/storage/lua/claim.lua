-- One poll of one worker: claim up to `free` due jobs and read their records, in one round trip.
-- ARQ 0.28 claims each job with WATCH / EXISTS / ZSCORE / MULTI-PSETEX-EXEC and then reads its job
-- data; a script claims atomically without WATCH, so a whole poll is one request.
-- A claimed job stays on the queue scored at its lease's end (the heartbeat moves both on): running
-- jobs never crowd the head of the queue, and a dead worker's job is due again when its lease lapses.
--
-- KEYS[1]  ARQ's queue (sorted set, score = when due, ms)     KEYS[2]  ARQ's abort set
-- ARGV[1]  now, ms     ARGV[2]  free slots     ARGV[3]  most queue entries to look at
-- ARGV[4]  lease, ms   ARGV[5]  this worker's id (the in-progress key's value)
-- ARGV[6]  abort entries older than this (ms) are dropped: their job is long gone
-- Returns {claimed, aborts}: claimed = {{id, queued score, {record field, value, ...}}, ...} in queue order,
-- aborts = every job id asked to abort (the worker cancels those it runs).

local queue, abort = KEYS[1], KEYS[2]
local now, free, scan, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local owner = ARGV[5]

local claimed = {}
if free > 0 then
  local due = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'WITHSCORES', 'LIMIT', 0, scan)
  for i = 1, #due, 2 do
    local id = due[i]
    if redis.call('SET', K.arq_in_progress(id), owner, 'PX', lease, 'NX') then
      redis.call('ZADD', queue, 'XX', now + lease, id)
      claimed[#claimed + 1] = {id, due[i + 1], redis.call('HGETALL', K.job(id))}
      if #claimed >= free then break end
    end
  end
end

redis.call('ZREMRANGEBYSCORE', abort, '-inf', ARGV[6])
return {claimed, redis.call('ZRANGE', abort, 0, -1)}
