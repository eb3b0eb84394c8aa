-- Renew (ARGV[1] = 'renew') or end ('release') this worker's leases on jobs, skipping any lease that
-- lapsed and went to another worker. A renewed job's queue score moves to the lease's new end; a
-- released one is due at once (if still queued: a finished job has left the queue already).
--
-- KEYS[1]  ARQ's queue     ARGV[2]  owner (worker id)     ARGV[3]  now, ms     ARGV[4]  lease, ms
-- ARGV[5..]  job ids

local queue, action, owner = KEYS[1], ARGV[1], ARGV[2]
local now, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 5, #ARGV do
  local id = ARGV[i]
  local in_progress = K.arq_in_progress(id)
  if redis.call('GET', in_progress) == owner then
    if action == 'renew' then
      redis.call('PEXPIRE', in_progress, lease)
      redis.call('ZADD', queue, 'XX', now + lease, id)
    else
      redis.call('DEL', in_progress)
      redis.call('ZADD', queue, 'XX', now, id)
    end
  end
end
return 0
