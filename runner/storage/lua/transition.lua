-- One guarded change of one job record, written atomically with everything that must agree with it:
-- status indexes, pending-by-priority, dead letters, expiry, metric buckets, the event stream, and
-- any extra commands (ARQ's keys) that must happen only if the guard passes.
-- Key names, statuses, TTLs and reply codes are written in by store.render; unpark() from parking.lua.
--
-- KEYS[1]  the job hash (every value JSON-encoded)
-- ARGV[1]  now, epoch seconds        ARGV[2]  the spec, JSON (store.TransitionSpec)
-- Returns {REPLY.<outcome>, status, detail} (store.outcome decodes it): applied, with the status before; or
-- refused, with the status now ("" = no record) and for `rate` the seconds to wait, for `duplicate` the id of
-- the job that used the create's idempotency key first.

local job = KEYS[1]
local now = tonumber(ARGV[1])
local spec = cjson.decode(ARGV[2])
local id = string.sub(job, #K.job('') + 1)

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
local function reply(code, detail) return {code, old, detail or ''} end

if spec.create then
  if exists then return reply(REPLY.refused) end
  if spec.create.idempotency then
    local first = redis.call('GET', spec.create.idempotency[1])
    if first then return reply(REPLY.duplicate, first) end
  end
elseif not exists then
  return reply(REPLY.refused)
elseif spec.from ~= cjson.null and spec.from ~= nil then
  local allowed = false
  for _, s in ipairs(spec.from) do if s == old then allowed = true end end
  if not allowed then return reply(REPLY.refused) end
end
if spec.unless and exists and field(spec.unless) ~= nil then return reply(REPLY.refused) end
for k, v in pairs(spec.match or {}) do
  if field(k) ~= v then return reply(REPLY.refused) end
end
for _, key in ipairs(spec.absent or {}) do
  if redis.call('EXISTS', key) == 1 then return reply(REPLY.refused) end
end
for _, key in ipairs(spec.not_in or {}) do
  if redis.call('ZSCORE', key, id) then return reply(REPLY.refused) end
end
-- A sliding-window admission (submits and manual retries per user per hour): checked last, so a
-- change that another guard refuses uses up nothing.
if spec.rate then
  local key, limit, window = spec.rate[1], spec.rate[2], spec.rate[3]
  if redis.call('ZCOUNT', key, now - window, '+inf') >= limit then
    local oldest = redis.call('ZRANGEBYSCORE', key, now - window, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    return reply(REPLY.rate, math.ceil(tonumber(oldest[2]) + window - now))
  end
end

local score
if spec.create then
  score = spec.create.score
  redis.call('ZADD', K.all, score, id)
  redis.call('ZADD', K.type(spec.create.type), score, id)
  redis.call('ZADD', K.user(spec.create.user), score, id)
else
  score = redis.call('ZSCORE', K.all, id) or now
end
-- Who the job belongs to never changes: the caller passes it (`who`, or `create`) when it has it.
local who = spec.create or spec.who or {}
local jtype = who.type or field('type')
local user = who.user or field('user_id')
local priority = who.priority or field('priority')
local org = who.org or field('org_id') or ''

-- The limits a job counts against: K.running sets, K.parked waiting rooms.
local scopes = {{'user', user}, {'type', jtype}, {'global', ''}}
if org ~= '' then table.insert(scopes, 2, {'org', org}) end

local function running_count(kind, name)
  if kind == 'global' then return redis.call('ZCARD', K.status(STATUS.processing)) end
  return redis.call('SCARD', K.running(kind, name))
end

if spec.limits and old ~= STATUS.processing then
  local fields = {}
  for i, scope in ipairs(scopes) do fields[i] = K.limit_field(scope[1], scope[2]) end
  local overrides = redis.call('HMGET', K.limits, unpack(fields))
  for i, scope in ipairs(scopes) do
    local kind, name = scope[1], scope[2]
    local limit = tonumber(overrides[i] or spec.limits[kind])
    if limit and running_count(kind, name) >= limit then
      local queue = queue_of(id)
      local queued_score = spec.queued_score or redis.call('ZSCORE', queue, id) or now * 1000
      redis.call('ZREM', queue, id)
      redis.call('ZADD', K.parked(kind, name), queued_score, id)
      local reason = 'waiting: ' .. kind .. ' limit ' .. limit .. ' reached'
      redis.call('HSET', job, 'waiting_reason', cjson.encode(reason))
      return reply(REPLY.parked)
    end
  end
end

if spec.delete then
  for _, s in ipairs(STATUSES) do redis.call('ZREM', K.status(s), id) end
  for _, p in ipairs(PRIORITIES) do redis.call('ZREM', K.pending(p), id) end
  for _, key in ipairs({K.all, K.dead, K.expiry, K.type(jtype), K.user(user)}) do redis.call('ZREM', key, id) end
  redis.call('DEL', job, K.artifact(id), K.notify_subscription(id), K.notify_log(id), K.checkpoints(id))
  return reply(REPLY.applied)
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
  if old ~= '' then redis.call('ZREM', K.status(old), id) end
  redis.call('ZADD', K.status(new), score, id)
  if PENDING[new] then
    redis.call('ZADD', K.pending(priority), score, id)
  else
    redis.call('ZREM', K.pending(priority), id)
  end
  if new == STATUS.failed then redis.call('ZADD', K.dead, now, id) end
  if old == STATUS.failed then redis.call('ZREM', K.dead, id) end
  if new == STATUS.processing then
    for _, scope in ipairs(scopes) do
      if scope[1] ~= 'global' then redis.call('SADD', K.running(scope[1], scope[2]), id) end
    end
  elseif old == STATUS.processing then
    for _, scope in ipairs(scopes) do
      if scope[1] ~= 'global' then redis.call('SREM', K.running(scope[1], scope[2]), id) end
    end
    for _, scope in ipairs(scopes) do unpark(scope[1], scope[2], 1) end
  end
  if TERMINAL[new] then
    for _, scope in ipairs(scopes) do redis.call('ZREM', K.parked(scope[1], scope[2]), id) end
    redis.call('ZADD', K.expiry, now + spec.retention, id)
    redis.call('EXPIRE', K.checkpoints(id), math.ceil(spec.retention))  -- a job's checkpoints live as long as it
  elseif TERMINAL[old] then
    redis.call('ZREM', K.expiry, id)
  end
end

if spec.metrics then
  for _, bucket in ipairs(BUCKETS) do
    local key = K.metrics(bucket.resolution, math.floor(now / bucket.seconds) * bucket.seconds)
    for k, n in pairs(spec.metrics) do redis.call('HINCRBYFLOAT', key, k, n) end
    redis.call('EXPIRE', key, bucket.ttl)
  end
end

for _, call in ipairs(spec.calls or {}) do redis.call(unpack(call)) end
if spec.audit then
  redis.call('XADD', K.audit, 'MAXLEN', '~', spec.maxlen, '*', 'job', id, 'type', jtype, 'owner', user,
    'action', spec.audit.action, 'by', spec.audit.by)
end
if spec.wake then redis.call('PUBLISH', K.wake, 1) end

if spec.event then
  local entry = {'job', id, 'type', jtype, 'user', user, 'status', new or old}
  for k, v in pairs(spec.event) do entry[#entry + 1] = k; entry[#entry + 1] = tostring(v) end
  redis.call('XADD', K.events, 'MAXLEN', '~', spec.maxlen, '*', unpack(entry))
end
return reply(REPLY.applied)
