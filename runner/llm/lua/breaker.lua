-- The circuit breaker of one LLM endpoint, shared by every worker.
--
-- KEYS[1]  the breaker hash (failures, open_until, opened_at, last_error, last_failure_at, last_success_at)
-- KEYS[2]  the half-open probe key       KEYS[3]  the set of known endpoints
-- ARGV[1]  allow | failure | success     ARGV[2]  now, ms    ARGV[3]  failures that open it
-- ARGV[4]  cool-down, ms                 ARGV[5]  the endpoint's name   ARGV[6]  the error (failure)
--
-- allow   -> {0, 0, ''} to go ahead, or {ms to wait, failures, last error} while open. After the cool-down
--            it is half-open: one call (the probe) goes ahead; a success closes it, a failure reopens it.
-- failure -> {failures, open (1/0), ''}      success -> {0, 0, ''}

local state, probe, endpoints = KEYS[1], KEYS[2], KEYS[3]
local op, now, threshold, cooldown = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local failures = tonumber(redis.call('HGET', state, 'failures') or '0')

if op == 'allow' then
  if failures < threshold then return {0, 0, ''} end
  local last = redis.call('HGET', state, 'last_error') or ''
  local reopen = tonumber(redis.call('HGET', state, 'open_until') or '0')
  if now < reopen then return {reopen - now, failures, last} end
  if redis.call('SET', probe, '1', 'NX', 'PX', cooldown) then return {0, 0, ''} end
  return {math.max(redis.call('PTTL', probe), 1), failures, last}
end

redis.call('SADD', endpoints, ARGV[5])
redis.call('HSET', state, 'endpoint', ARGV[5])
if op == 'failure' then
  failures = redis.call('HINCRBY', state, 'failures', 1)
  redis.call('HSET', state, 'last_error', ARGV[6], 'last_failure_at', now)
  if failures >= threshold then
    if failures == threshold then redis.call('HSET', state, 'opened_at', now) end
    redis.call('HSET', state, 'open_until', now + cooldown)
    redis.call('DEL', probe)
    return {failures, 1, ''}
  end
  return {failures, 0, ''}
end

if failures > 0 then
  redis.call('HSET', state, 'failures', 0, 'open_until', 0)
  redis.call('DEL', probe)
end
redis.call('HSET', state, 'last_success_at', now)
return {0, 0, ''}
