-- Renew (ARGV[1] = 'renew') or end ('release') this worker's leases on jobs, skipping any lease that
-- lapsed and went to another worker. A renewed job's queue score moves to the lease's new end; a
-- released one is due at once (if still queued: a finished job has left its queue already).
--
-- ARGV[2]  owner (worker id)     ARGV[3]  now, ms     then per job: its id, its ARQ queue, its lease (ms)

local action, owner, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 4, #ARGV, 3 do
  local id, queue, lease = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
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
