-- top_products: product totals over daily popularity sorted sets of one shard.
--
-- KEYS[1]        scratch   temporary sorted set of the shard (deleted before returning)
-- KEYS[2 .. 1+D] views     daily sorted sets: product -> views that day
-- KEYS[2+D ..]   purchases daily sorted sets: product -> units bought that day
-- ARGV[1]        D         number of days (view keys; as many purchase keys follow)
-- ARGV[2]        weight    what one unit bought counts, in views
-- Returns  flat [id, score, ...] of every product of the shard (views + weight x units
--          bought); the caller adds the shards' totals and ranks them (a shard's own
--          top n need not be the site's, and Lua's string order follows the locale).

local d, weight = tonumber(ARGV[1]), ARGV[2]
local args = {KEYS[1], #KEYS - 1}
for i = 2, #KEYS do args[#args + 1] = KEYS[i] end
args[#args + 1] = 'WEIGHTS'
for i = 2, #KEYS do args[#args + 1] = (i <= 1 + d) and '1' or weight end
redis.call('ZUNIONSTORE', unpack(args))
local out = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
redis.call('DEL', KEYS[1])
return out
