-- Jobs held back by a running limit (parked by lua/transition.lua's start) going back to ARQ's queue:
-- the one way out of a waiting room, for transition.lua (a job left processing) and release.lua (an
-- admin changed the limit). Defines queue_of() and unpark(); its K names are written in by store.render.

-- Up to `count` jobs of the scope `kind`:`name`, oldest place first, back on the queue at the place they
-- had, their waiting reason cleared; the workers are woken once if any went. Returns how many went.
-- ARQ's queue of job `id`: the one of its record's named queue (queues.py); a record from before named
-- queues has none, and belongs to the default one.
local function queue_of(id)
  local name = redis.call('HGET', K.job(id), 'queue')
  name = name and cjson.decode(name) or DEFAULT_QUEUE
  if name == DEFAULT_QUEUE then return K.queue end
  return K.named_queue(name)
end

local function unpark(kind, name, count)
  local popped = redis.call('ZPOPMIN', K.parked(kind, name), count)
  for i = 1, #popped, 2 do
    redis.call('ZADD', queue_of(popped[i]), popped[i + 1], popped[i])
    redis.call('HDEL', K.job(popped[i]), 'waiting_reason')
  end
  if #popped > 0 then redis.call('PUBLISH', K.wake, 1) end
  return #popped / 2
end
