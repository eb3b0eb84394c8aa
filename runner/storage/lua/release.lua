-- Every job waiting on one running limit back to the queue (Store.release_parked, when an admin sets or
-- removes that limit): each takes its turn again, and a start parks again those still over the limit.
--
-- ARGV[1]  the limit's kind (user, org, type, global)     ARGV[2]  its name
-- Returns how many jobs went back.

return unpark(ARGV[1], ARGV[2], redis.call('ZCARD', K.parked(ARGV[1], ARGV[2])))
