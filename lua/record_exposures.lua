-- record_exposures: remember a visitor's arm per campaign and count its first exposure.
--
-- KEYS[1]        arms      hash of the visitor: "<campaign>" -> arm (variant id or
--                          "holdout"), "<campaign>|t" -> first exposure (epoch seconds),
--                          "<campaign>|c" -> 1 once a goal converted
-- KEYS[1+i]      results   hash of campaign i in the visitor's shard:
--                          "<arm>|exposed" -> visitors first exposed in that arm
-- ARGV[1]        now       epoch seconds of the exposure
-- ARGV[2]        ttl       seconds the arms hash lives after the last write (0 = forever)
-- ARGV[1+2i], ARGV[2+2i]   campaign i's id and the arm the visitor was exposed to
-- Returns  per campaign 1 (first exposure: arm stored and counted) or 0 (seen before:
--          nothing changes, the first arm stays the visitor's arm).
--
-- The arm and its count change together, so "exposed" counts each visitor once per
-- campaign however many page views race.

local now, ttl = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS - 1 do
  local campaign, arm = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  if redis.call('HSETNX', KEYS[1], campaign, arm) == 1 then
    redis.call('HSET', KEYS[1], campaign .. '|t', now)
    redis.call('HINCRBY', KEYS[1 + i], arm .. '|exposed', 1)
    out[i] = 1
  else
    out[i] = 0
  end
end
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return out
