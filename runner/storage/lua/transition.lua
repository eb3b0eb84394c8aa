-- One guarded change of one job record, written atomically with everything that must agree with it:
-- status indexes, pending-by-priority, dead letters, expiry, metric buckets, the event stream, and
-- any extra commands (ARQ's keys) that must happen only if the guard passes.
--
-- KEYS[1]  the job hash (every value JSON-encoded)
-- ARGV[1]  key prefix        ARGV[2]  now, epoch seconds        ARGV[3]  the spec, JSON (see store.py)
-- Returns {1, old_status} when applied, {0, current_status} when the guard refused ("" = no record),
-- or {0, first_job_id} when a create's idempotency key was already used.

local job = KEYS[1]
local prefix = ARGV[1]
local now = tonumber(ARGV[2])
local spec = cjson.decode(ARGV[3])
local id = string.sub(job, #prefix + 5)
local TERMINAL = {completed = true, failed = true, cancelled = true}
local PENDING = {queued = true, retrying = true}

local seen = {}
local function field(name)
  if seen[name] == nil then
    local raw = redis.call('HGET', job, name)
    seen[name] = raw and cjson.decode(raw) or cjson.null
  end
  if seen[name] == cjson.null then return nil end
  return seen[name]
end

local exists = redis.call('EXISTS', job) == 1
local old = exists and field('status') or ''

if spec.create then
  if exists then return {0, old} end
  if spec.create.idempotency then
    local first = redis.call('GET', spec.create.idempotency[1])
    if first then return {0, first} end
  end
elseif not exists then
  return {0, ''}
elseif spec.from ~= cjson.null and spec.from ~= nil then
  local allowed = false
  for _, s in ipairs(spec.from) do if s == old then allowed = true end end
  if not allowed then return {0, old} end
end
if spec.unless and exists and field(spec.unless) ~= nil then return {0, old} end
for k, v in pairs(spec.match or {}) do
  if field(k) ~= v then return {0, old} end
end
for _, key in ipairs(spec.absent or {}) do
  if redis.call('EXISTS', key) == 1 then return {0, old} end
end
for _, key in ipairs(spec.not_in or {}) do
  if redis.call('ZSCORE', key, id) then return {0, old} end
end
-- A sliding-window admission (submits and manual retries per user per hour): checked last, so a
-- change that another guard refuses uses up nothing.
if spec.rate then
  local key, limit, window = spec.rate[1], spec.rate[2], spec.rate[3]
  if redis.call('ZCOUNT', key, now - window, '+inf') >= limit then
    local oldest = redis.call('ZRANGEBYSCORE', key, now - window, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    return {0, 'rate:' .. tostring(math.ceil(tonumber(oldest[2]) + window - now))}
  end
end

local score
if spec.create then
  score = spec.create.score
  redis.call('ZADD', prefix .. 'idx:all', score, id)
  redis.call('ZADD', prefix .. 'idx:type:' .. spec.create.type, score, id)
  redis.call('ZADD', prefix .. 'idx:user:' .. spec.create.user, score, id)
else
  score = redis.call('ZSCORE', prefix .. 'idx:all', id) or now
end
-- Who the job belongs to never changes: the caller passes it (`who`, or `create`) when it has it.
local who = spec.create or spec.who or {}
local jtype = who.type or field('type')
local user = who.user or field('user_id')
local priority = who.priority or field('priority')
local org = who.org or field('org_id') or ''

-- The limits a job counts against: running:<kind>:<name> sets, parked:<kind>:<name> waiting rooms.
local scopes = {{'user', user}, {'type', jtype}, {'global', ''}}
if org ~= '' then table.insert(scopes, 2, {'org', org}) end

local function running_count(kind, name)
  if kind == 'global' then return redis.call('ZCARD', prefix .. 'idx:status:processing') end
  return redis.call('SCARD', prefix .. 'running:' .. kind .. ':' .. name)
end

local function unpark(kind, name)
  local popped = redis.call('ZPOPMIN', prefix .. 'parked:' .. kind .. ':' .. name)
  if popped[1] then
    redis.call('ZADD', spec.queue, popped[2], popped[1])
    redis.call('HDEL', prefix .. 'job:' .. popped[1], 'waiting_reason')
    redis.call('PUBLISH', prefix .. 'wake', 1)
  end
end

if spec.limits and old ~= 'processing' then
  local names = {}
  for i, scope in ipairs(scopes) do names[i] = scope[1] .. ':' .. scope[2] end
  local overrides = redis.call('HMGET', prefix .. 'limits', unpack(names))
  for i, scope in ipairs(scopes) do
    local kind, name = scope[1], scope[2]
    local limit = tonumber(overrides[i] or spec.limits[kind])
    if limit and running_count(kind, name) >= limit then
      local queued_score = spec.queued_score or redis.call('ZSCORE', spec.queue, id) or now * 1000
      redis.call('ZREM', spec.queue, id)
      redis.call('ZADD', prefix .. 'parked:' .. kind .. ':' .. name, queued_score, id)
      local reason = 'waiting: ' .. kind .. ' limit ' .. limit .. ' reached'
      redis.call('HSET', job, 'waiting_reason', cjson.encode(reason))
      return {0, 'parked'}
    end
  end
end

if spec.delete then
  for _, s in ipairs({'queued', 'processing', 'retrying', 'completed', 'failed', 'cancelled'}) do
    redis.call('ZREM', prefix .. 'idx:status:' .. s, id)
  end
  for _, p in ipairs({'high', 'normal', 'low'}) do redis.call('ZREM', prefix .. 'idx:pending:' .. p, id) end
  for _, k in ipairs({'all', 'dead', 'expiry', 'type:' .. jtype, 'user:' .. user}) do
    redis.call('ZREM', prefix .. 'idx:' .. k, id)
  end
  redis.call('DEL', job, prefix .. 'artifact:' .. id)
  return {1, old}
end

if spec.create then
  if spec.create.idempotency then
    redis.call('SET', spec.create.idempotency[1], id, 'EX', spec.create.idempotency[2])
  end
end
if spec.rate then
  local key, window = spec.rate[1], spec.rate[3]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  -- one member per admission: a retried job counts again
  redis.call('ZADD', key, now, id .. '@' .. tostring(now))
  redis.call('EXPIRE', key, window)
end

local set = {}
for k, v in pairs(spec.set or {}) do set[#set + 1] = k; set[#set + 1] = v end
if #set > 0 then redis.call('HSET', job, unpack(set)) end
for k, n in pairs(spec.incr or {}) do redis.call('HINCRBY', job, k, n) end

local new = spec.status
if new and new ~= old then
  redis.call('HSET', job, 'status', cjson.encode(new))
  if old ~= '' then redis.call('ZREM', prefix .. 'idx:status:' .. old, id) end
  redis.call('ZADD', prefix .. 'idx:status:' .. new, score, id)
  if PENDING[new] then
    redis.call('ZADD', prefix .. 'idx:pending:' .. priority, score, id)
  else
    redis.call('ZREM', prefix .. 'idx:pending:' .. priority, id)
  end
  if new == 'failed' then redis.call('ZADD', prefix .. 'idx:dead', now, id) end
  if old == 'failed' then redis.call('ZREM', prefix .. 'idx:dead', id) end
  if new == 'processing' then
    for _, scope in ipairs(scopes) do
      if scope[1] ~= 'global' then redis.call('SADD', prefix .. 'running:' .. scope[1] .. ':' .. scope[2], id) end
    end
  elseif old == 'processing' then
    for _, scope in ipairs(scopes) do
      if scope[1] ~= 'global' then redis.call('SREM', prefix .. 'running:' .. scope[1] .. ':' .. scope[2], id) end
    end
    for _, scope in ipairs(scopes) do unpark(scope[1], scope[2]) end
  end
  if TERMINAL[new] then
    for _, scope in ipairs(scopes) do redis.call('ZREM', prefix .. 'parked:' .. scope[1] .. ':' .. scope[2], id) end
    redis.call('ZADD', prefix .. 'idx:expiry', now + spec.retention, id)
  elseif TERMINAL[old] then
    redis.call('ZREM', prefix .. 'idx:expiry', id)
  end
end

if spec.metrics then
  local minute = prefix .. 'm:1m:' .. (math.floor(now / 60) * 60)
  local hour = prefix .. 'm:1h:' .. (math.floor(now / 3600) * 3600)
  for k, n in pairs(spec.metrics) do
    redis.call('HINCRBYFLOAT', minute, k, n)
    redis.call('HINCRBYFLOAT', hour, k, n)
  end
  redis.call('EXPIRE', minute, 3 * 86400)
  redis.call('EXPIRE', hour, 35 * 86400)
end

for _, call in ipairs(spec.calls or {}) do redis.call(unpack(call)) end
if spec.audit then
  redis.call('XADD', prefix .. 'audit', 'MAXLEN', '~', spec.maxlen, '*', 'job', id, 'type', jtype, 'owner', user,
    'action', spec.audit.action, 'by', spec.audit.by)
end
if spec.wake then redis.call('PUBLISH', prefix .. 'wake', 1) end

if spec.event then
  local entry = {'job', id, 'type', jtype, 'user', user, 'status', new or old}
  for k, v in pairs(spec.event) do entry[#entry + 1] = k; entry[#entry + 1] = tostring(v) end
  redis.call('XADD', prefix .. 'events', 'MAXLEN', '~', spec.maxlen, '*', unpack(entry))
end
return {1, old}
