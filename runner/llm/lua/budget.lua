-- A requests-per-minute and a tokens-per-minute budget shared by every worker: two token buckets in one
-- hash, refilled continuously up to one minute's worth.
--
-- KEYS[1]  the bucket hash (req, tok, at)
-- ARGV[1]  take | settle    ARGV[2]  now, ms    ARGV[3]  rpm (0: none)    ARGV[4]  tpm (0: none)
-- ARGV[5]  take: tokens wanted; settle: tokens used beyond what was taken (may be negative)
--
-- take   -> 0 when granted (and taken), else the ms to wait before asking again
-- settle -> 0; a call that used more tokens than it took leaves the bucket in debt
-- TTL_MS (budget.py, in the line before this script): how long an idle bucket's hash is kept

local key = KEYS[1]
local op, now, rpm, tpm, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local req = tonumber(redis.call('HGET', key, 'req') or rpm)
local tok = tonumber(redis.call('HGET', key, 'tok') or tpm)
local at = tonumber(redis.call('HGET', key, 'at') or now)
local elapsed = math.max(0, now - at)
if rpm > 0 then req = math.min(rpm, req + elapsed * rpm / 60000) end
if tpm > 0 then tok = math.min(tpm, tok + elapsed * tpm / 60000) end

local wait = 0
if op == 'take' then
  if tpm > 0 then n = math.min(n, tpm) end
  if rpm > 0 and req < 1 then wait = math.max(wait, (1 - req) * 60000 / rpm) end
  if tpm > 0 and tok < n then wait = math.max(wait, (n - tok) * 60000 / tpm) end
  if wait == 0 then
    if rpm > 0 then req = req - 1 end
    if tpm > 0 then tok = tok - n end
  end
elseif tpm > 0 then
  tok = tok - n
end
redis.call('HSET', key, 'req', req, 'tok', tok, 'at', now)
redis.call('PEXPIRE', key, TTL_MS)
return math.ceil(wait)
