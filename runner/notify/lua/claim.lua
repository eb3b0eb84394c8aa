-- Take up to ARGV[2] due deliveries for one worker: each stays due, at the end of a lease (ARGV[3] s), so
-- that a worker that dies while sending leaves it to another (at least once).
--
-- ARGV[1] now, epoch s   ARGV[2] most to take   ARGV[3] lease, s
-- Returns the taken deliveries' JSON, oldest due first.

local now, most, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local taken = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.notify_due, '-inf', now, 'LIMIT', 0, most)) do
  local json = redis.call('HGET', K.notify_deliveries, id)
  if json then
    redis.call('ZADD', K.notify_due, now + lease, id)
    taken[#taken + 1] = json
  else
    redis.call('ZREM', K.notify_due, id)
  end
end
return taken
