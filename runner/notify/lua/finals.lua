-- Job-end events for the consumer group ARGV[1] (`notify`), with what telling of them needs, in one call:
-- the entries of other states are acknowledged at once; for each final one (its status in ARGV[6..]) come
-- its fields, the job's subscription and the profile of whom it tells (the subscription's `to`, else the
-- job's owner). The final entries are acknowledged by the caller once their notices are queued.
--
-- ARGV[1] group   ARGV[2] consumer   ARGV[3] ">" new entries, "0" this consumer's pending ones, or "stale":
-- others' entries pending for longer than ARGV[5] ms (a dead worker's), claimed for this consumer
-- ARGV[4] most entries   ARGV[5] idle ms (stale)   ARGV[6..] the final statuses
-- Returns {entries read, {entry id, job, user, type, status, attempt, error, subscription, profile, ...}}
-- ("" for a missing subscription or profile).

local group, consumer, how, most = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local final = {}
for i = 6, #ARGV do final[ARGV[i]] = true end

local entries
if how == 'stale' then
  entries = redis.call('XAUTOCLAIM', K.events, group, consumer, ARGV[5], '0-0', 'COUNT', most)[2]
else
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', most, 'STREAMS', K.events, how)
  entries = reply and reply[1] and reply[1][2] or {}
end

local out, others = {}, {}
for _, entry in ipairs(entries) do
  local fields, row = entry[2], {}
  if fields then
    for j = 1, #fields, 2 do row[fields[j]] = fields[j + 1] end
  end
  if row.status and final[row.status] and row.job then
    local sub = redis.call('GET', K.notify_subscription(row.job))
    local to = row.user or ''
    if sub then
      local ok, decoded = pcall(cjson.decode, sub)
      if ok and type(decoded) == 'table' and type(decoded.to) == 'string' then to = decoded.to end
    end
    local profile = redis.call('GET', K.profile(to))
    for _, value in ipairs({entry[1], row.job, row.user or '', row.type or '', row.status, row.attempt or '',
                            row.error or '', sub or '', profile or ''}) do
      out[#out + 1] = value
    end
  else
    others[#others + 1] = entry[1]
  end
end
for i = 1, #others, 1000 do
  redis.call('XACK', K.events, group, unpack(others, i, math.min(i + 999, #others)))
end
return {#entries, out}
