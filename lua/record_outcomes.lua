-- record_outcomes: count one visitor's decision feedback and goal conversions.
--
-- KEYS[1]        arms      hash of the visitor (see record_exposures.lua)
-- KEYS[2 ..]     results   hashes of the campaigns involved, in the visitor's shard
-- ARGV[1]        T         number of token events, then per token event:
--                          key index k (into KEYS), variant, kind (impression | click |
--                          dismiss | conversion) -> HINCRBY KEYS[k] "<variant>|<kind>" 1
-- then           G         number of goal candidates, then per candidate:
--                          key index k, campaign, event time (epoch seconds), value
--                          (a number, 0 when the event has none)
-- Returns  the number of conversions counted.
--
-- A goal converts once per visitor per campaign, for the arm of the visitor's first
-- exposure (the holdout included), and only for an event after that exposure: the
-- events of the page view that first exposed the visitor happened before it.

local out = 0
local t = tonumber(ARGV[1])
local a = 2
for _ = 1, t do
  redis.call('HINCRBY', KEYS[tonumber(ARGV[a])], ARGV[a + 1] .. '|' .. ARGV[a + 2], 1)
  a = a + 3
end
local g = tonumber(ARGV[a])
a = a + 1
for _ = 1, g do
  local key, campaign, ts, value = KEYS[tonumber(ARGV[a])], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  a = a + 4
  local arm = redis.call('HGET', KEYS[1], campaign)
  if arm then
    local exposed = tonumber(redis.call('HGET', KEYS[1], campaign .. '|t') or '0')
    if tonumber(ts) > exposed and redis.call('HSETNX', KEYS[1], campaign .. '|c', 1) == 1 then
      redis.call('HINCRBY', key, arm .. '|conversions', 1)
      if tonumber(value) ~= 0 then redis.call('HINCRBYFLOAT', key, arm .. '|value', value) end
      out = out + 1
    end
  end
end
return out
