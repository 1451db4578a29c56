-- claim_job: take over a bulk job whose owner is gone, to resume it.
--
-- KEYS[1]  job       hash: state, owner, lease (epoch seconds), shard, cursor, done, ...
-- ARGV[1]  owner     the claiming process' id
-- ARGV[2]  now       epoch seconds
-- ARGV[3]  lease     seconds the claim is held; the owner renews it after each page
-- Returns  the job's fields (flat list) if claimed, else an empty list.
--
-- Claimable: state `interrupted` (stopped at a page boundary by a shutdown),
-- `running` with its lease expired (its process died), or `failed` on Redis with its
-- `retry_at` (epoch seconds; empty when the failure is final) passed. Checked and
-- taken in one atomic call, so of two processes starting at once exactly one resumes
-- the job.

local state = redis.call('HGET', KEYS[1], 'state')
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease') or '0') or 0
local retry_at = tonumber(redis.call('HGET', KEYS[1], 'retry_at') or '')
local now = tonumber(ARGV[2])
if state == 'interrupted' or (state == 'running' and lease < now)
    or (state == 'failed' and retry_at ~= nil and retry_at <= now) then
  redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[1],
             'lease', tostring(now + tonumber(ARGV[3])), 'retry_at', '')
  return redis.call('HGETALL', KEYS[1])
end
return {}
