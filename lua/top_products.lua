-- top_products: the most popular products over daily sorted sets of one site.
--
-- KEYS[1]        scratch   temporary sorted set (deleted before returning)
-- KEYS[2 .. 1+D] views     daily sorted sets: product -> views that day
-- KEYS[2+D ..]   purchases daily sorted sets: product -> units bought that day
-- ARGV[1]        D         number of days (view keys; as many purchase keys follow)
-- ARGV[2]        weight    what one unit bought counts, in views
-- ARGV[3]        n         products wanted
-- Returns  flat [id, score, ...]: the n best products by score (views + weight x units
--          bought) descending, ties by product id ascending (bytewise), so the choice
--          is deterministic; the caller sorts them (Lua's string order follows the
--          locale, not bytes).

local d, weight, n = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local args = {KEYS[1], #KEYS - 1}
for i = 2, #KEYS do args[#args + 1] = KEYS[i] end
args[#args + 1] = 'WEIGHTS'
for i = 2, #KEYS do args[#args + 1] = (i <= 1 + d) and '1' or weight end
redis.call('ZUNIONSTORE', unpack(args))
local top = redis.call('ZREVRANGE', KEYS[1], 0, n - 1, 'WITHSCORES')
local out = {}
if #top > 0 then
  local last = top[#top]
  for i = 1, #top, 2 do
    if tonumber(top[i + 1]) > tonumber(last) then
      out[#out + 1] = top[i]
      out[#out + 1] = top[i + 1]
    end
  end
  -- members with the boundary score, smallest ids first (ZRANGEBYSCORE orders ties
  -- lexicographically ascending; ZREVRANGE above ordered them descending)
  local ties = redis.call('ZRANGEBYSCORE', KEYS[1], last, last, 'LIMIT', 0, n - #out / 2)
  for _, id in ipairs(ties) do
    out[#out + 1] = id
    out[#out + 1] = last
  end
end
redis.call('DEL', KEYS[1])
return out
