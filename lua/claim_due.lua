-- claim_due: claim the visitors of one shard whose next time change is due.
--
-- KEYS[1]  due       sorted set: visitor -> instant (epoch seconds) its membership may flip
-- KEYS[2]  claimed   sorted set: visitor -> end of the claim's lease (epoch seconds)
-- ARGV[1]  now       epoch seconds
-- ARGV[2]  lease     seconds a claim is held before another scheduler may take it over
-- ARGV[3]  limit     most visitors claimed per call
-- Returns  the claimed visitor ids. Each is moved from `due` (or from an expired
--          lease in `claimed`: its claimer crashed) to `claimed` until now + lease;
--          commit_membership removes it from `claimed` when the work is done.

local now, lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local until_ = now + lease
local out = {}
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
for _, vid in ipairs(stale) do
  redis.call('ZADD', KEYS[2], until_, vid)
  out[#out + 1] = vid
end
if #out < limit then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit - #out)
  for _, vid in ipairs(due) do
    redis.call('ZREM', KEYS[1], vid)
    redis.call('ZADD', KEYS[2], until_, vid)
    out[#out + 1] = vid
  end
end
return out
