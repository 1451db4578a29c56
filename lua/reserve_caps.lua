-- reserve_caps: count served decisions against frequency caps, atomically.
--
-- KEYS[1]  caps      hash of the visitor: "<campaign>|<per>|<period>" -> times served
--                    ("*" counts every interruptive decision, for the site-wide limits)
-- ARGV[1]  ttl       seconds the hash lives after the last write (covers the longest period)
-- ARGV[2]  G         number of campaigns to reserve
-- then per campaign: n, then n pairs (field, max; max 0 = no limit, only counted)
-- ARGV[last 3]       the visitor's current session, day and week periods (stale fields of
--                    older periods are dropped)
-- Returns  per campaign 1 (reserved: every field was under its max and is incremented)
--          or 0 (a cap was reached meanwhile: nothing incremented for it).
--
-- Decisions are made from a read of this hash; concurrent page views of the same
-- visitor race, and this script is where the race is settled: a cap is never exceeded.

local ttl, g = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
local a = 3
for _ = 1, g do
  local n = tonumber(ARGV[a])
  local ok = true
  for p = 1, n do
    local max = tonumber(ARGV[a + 2 * p])
    if max > 0 and (tonumber(redis.call('HGET', KEYS[1], ARGV[a + 2 * p - 1])) or 0) >= max then
      ok = false
    end
  end
  if ok then
    for p = 1, n do redis.call('HINCRBY', KEYS[1], ARGV[a + 2 * p - 1], 1) end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  a = a + 1 + 2 * n
end

local current = {session = ARGV[#ARGV - 2], day = ARGV[#ARGV - 1], week = ARGV[#ARGV]}
if redis.call('HLEN', KEYS[1]) > 32 then
  local fields = redis.call('HKEYS', KEYS[1])
  for _, f in ipairs(fields) do
    local per, period = string.match(f, '|(%a+)|(%-?%d+)$')
    if per and per ~= 'lifetime' and current[per] ~= period then redis.call('HDEL', KEYS[1], f) end
  end
end
redis.call('EXPIRE', KEYS[1], ttl)
return out
