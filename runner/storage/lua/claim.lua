-- One poll of one worker: claim due jobs of each queue it serves, up to that queue's free slots, and read
-- their records, in one round trip. ARQ 0.28 claims each job with WATCH / EXISTS / ZSCORE /
-- MULTI-PSETEX-EXEC and then reads its job data; a script claims atomically without WATCH, so a whole poll
-- is one request.
-- A claimed job stays on its queue scored at its lease's end (the heartbeat moves both on): running
-- jobs never crowd the head of the queue, and a dead worker's job is due again when its lease lapses.
--
-- KEYS[1]  ARQ's abort set     KEYS[2..]  the ARQ queues served (sorted sets, score = when due, ms)
-- ARGV[1]  now, ms     ARGV[2]  most entries to look at per queue     ARGV[3]  this worker's id (the
-- in-progress key's value)     ARGV[4]  abort entries older than this (ms) are dropped: their job is long
-- gone     then per queue, in KEYS' order: its free slots, its lease (ms)
-- Returns {claimed, aborts}: claimed = {{id, queued score, {record field, value, ...}, queue's place in KEYS
-- from 1}, ...}, each queue's in its order; aborts = every job id asked to abort (the worker cancels those
-- it runs).

local abort = KEYS[1]
local now, scan, owner = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

local claimed = {}
for q = 2, #KEYS do
  local queue = KEYS[q]
  local free, lease = tonumber(ARGV[1 + 2 * q]), tonumber(ARGV[2 + 2 * q])
  if free > 0 then
    local due = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'WITHSCORES', 'LIMIT', 0, scan)
    local taken = 0
    for i = 1, #due, 2 do
      local id = due[i]
      if redis.call('SET', K.arq_in_progress(id), owner, 'PX', lease, 'NX') then
        redis.call('ZADD', queue, 'XX', now + lease, id)
        claimed[#claimed + 1] = {id, due[i + 1], redis.call('HGETALL', K.job(id)), q - 1}
        taken = taken + 1
        if taken >= free then break end
      end
    end
  end
end

redis.call('ZREMRANGEBYSCORE', abort, '-inf', ARGV[4])
return {claimed, redis.call('ZRANGE', abort, 0, -1)}
