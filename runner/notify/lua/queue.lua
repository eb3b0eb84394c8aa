-- Deliveries into the outbox. Each waits in its lane (one job's deliveries to one address, in the order
-- they were queued): only a lane's first delivery is ever due, so a receiver gets a job's messages in
-- order even while an earlier one is being retried. A delivery the outbox holds already is not queued
-- again (the same job-end event read twice).
--
-- ARGV[1] now, epoch s   ARGV[2] how long an idle lane is kept, s   then per delivery: id, lane, its JSON
-- Returns how many were queued.

local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local queued = 0
for i = 3, #ARGV, 3 do
  local id, lane, json = ARGV[i], K.notify_lane(ARGV[i + 1]), ARGV[i + 2]
  if redis.call('HSETNX', K.notify_deliveries, id, json) == 1 then
    redis.call('RPUSH', lane, id)
    redis.call('EXPIRE', lane, ttl)
    if redis.call('LINDEX', lane, 0) == id then redis.call('ZADD', K.notify_due, now, id) end
    queued = queued + 1
  end
end
return queued
