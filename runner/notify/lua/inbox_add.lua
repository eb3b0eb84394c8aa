-- One notification into a user's inbox, unread: kept with the newest CAP of theirs and for the retention,
-- every key of the inbox expiring with it. A notification the inbox holds already is not added again
-- (a job-end event read twice: delivery is at least once).
--
-- ARGV[1] user   ARGV[2] notification id   ARGV[3] made at, epoch s   ARGV[4] the Notification's JSON
-- ARGV[5] "1" for a failed job's notice (counted until the user next looks)   ARGV[6] cap
-- ARGV[7] retention, s   ARGV[8] now, epoch s
-- Returns 1 when added, 0 for a repeat.

local user, id, at = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ids, notes, unread, failed = K.inbox(user), K.inbox_notes(user), K.inbox_unread(user), K.inbox_failed(user)
if redis.call('HSETNX', notes, id, ARGV[4]) == 0 then return 0 end
redis.call('ZADD', ids, at, id)
redis.call('ZADD', unread, at, id)
if ARGV[5] == '1' then redis.call('ZADD', failed, at, id) end

local cap, keep, now = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local gone = redis.call('ZRANGEBYSCORE', ids, '-inf', '(' .. (now - keep))
for _, old in ipairs(redis.call('ZRANGE', ids, 0, -(cap + 1))) do gone[#gone + 1] = old end
for _, old in ipairs(gone) do
  redis.call('ZREM', ids, old)
  redis.call('ZREM', unread, old)
  redis.call('ZREM', failed, old)
  redis.call('HDEL', notes, old)
end
for _, key in ipairs({ids, notes, unread, failed}) do redis.call('EXPIRE', key, keep) end
return 1
