-- The end of one attempt at one delivery: due again later ("retry", with the attempt counted in its JSON),
-- or out of the outbox ("done": delivered or given up), when the next of its lane becomes due. The
-- attempt goes to its job's delivery log; a failure to the outbox's health (what the Workers page shows).
--
-- ARGV[1] delivery id   ARGV[2] its lane   ARGV[3] "retry" or "done"   ARGV[4] due again at, epoch s (retry)
-- ARGV[5] the delivery's JSON (retry)   ARGV[6] the attempt's error ("" when it was delivered)
-- ARGV[7] "1" when given up   ARGV[8] now, epoch s   ARGV[9] job id ("" for none)   ARGV[10] the attempt's JSON
-- ARGV[11] most attempts a job's log keeps   ARGV[12] how long the log and an idle lane are kept, s
-- Returns 0 when another worker had finished the delivery already (its lease had lapsed), else 1.

local id, lane, outcome, now = ARGV[1], K.notify_lane(ARGV[2]), ARGV[3], tonumber(ARGV[8])
local keep = tonumber(ARGV[12])
if redis.call('HEXISTS', K.notify_deliveries, id) == 0 then return 0 end
if outcome == 'retry' then
  redis.call('HSET', K.notify_deliveries, id, ARGV[5])
  redis.call('ZADD', K.notify_due, tonumber(ARGV[4]), id)
  redis.call('SADD', K.notify_failing, id)
else
  redis.call('HDEL', K.notify_deliveries, id)
  redis.call('ZREM', K.notify_due, id)
  redis.call('SREM', K.notify_failing, id)
  redis.call('LREM', lane, 1, id)
  local following = redis.call('LINDEX', lane, 0)
  if following then
    redis.call('ZADD', K.notify_due, 'NX', now, following)
    redis.call('EXPIRE', lane, keep)
  end
end
if ARGV[6] ~= '' then redis.call('HSET', K.notify_health, 'last_error', ARGV[6], 'last_error_at', now) end
if ARGV[7] == '1' then redis.call('HINCRBY', K.notify_health, 'given_up', 1) end
if ARGV[9] ~= '' then
  local log = K.notify_log(ARGV[9])
  redis.call('RPUSH', log, ARGV[10])
  redis.call('LTRIM', log, -tonumber(ARGV[11]), -1)
  redis.call('EXPIRE', log, keep)
end
return 1
