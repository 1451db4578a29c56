-- combine_segments: evaluate a set expression over one shard's segment bitmaps.
--
-- KEYS[1]          scratch key (this shard's tag), deleted before returning
-- KEYS[2 .. ]      the shard's segment bitmaps (bit = visitor ordinal) and one result
--                  key per instruction, in any order: instructions name them by index
-- ARGV[1]          ttl of every result key, milliseconds
-- ARGV[2]          sample size k: how many member ordinals of the last result to return
-- ARGV[3 .. ]      instructions, in order: op ("and" | "or"), dest (KEYS index),
--                  p, p source indexes, n, n excluded source indexes
--                  ("and" with n > 0 is p1 AND ... AND NOT (x1 OR ... OR xn))
-- Returns  {bit count of the last dest, up to k of its set bits (ordinals), ascending}
--
-- BITOP pads shorter inputs with zero bytes, so before NOT the excluded bitmap is
-- stretched to the positive one's length: otherwise the tail of the positive bits
-- past the end of the excluded bitmap would be dropped.

local ttl, k = tonumber(ARGV[1]), tonumber(ARGV[2])
local scratch = KEYS[1]
local a = 3
local dest = nil
while a <= #ARGV do
  local op = ARGV[a]
  dest = KEYS[tonumber(ARGV[a + 1])]
  local p = tonumber(ARGV[a + 2])
  local pos = {}
  for j = 1, p do pos[j] = KEYS[tonumber(ARGV[a + 2 + j])] end
  local n = tonumber(ARGV[a + 3 + p])
  local neg = {}
  for j = 1, n do neg[j] = KEYS[tonumber(ARGV[a + 3 + p + j])] end
  if op == 'or' then
    redis.call('BITOP', 'OR', dest, unpack(pos))
  elseif op == 'and' then
    redis.call('BITOP', 'AND', dest, unpack(pos))
    if n > 0 then
      redis.call('BITOP', 'OR', scratch, unpack(neg))
      local len = redis.call('STRLEN', dest)
      if len > 0 then
        redis.call('SETBIT', scratch, len * 8 - 1, redis.call('GETBIT', scratch, len * 8 - 1))
        redis.call('BITOP', 'NOT', scratch, scratch)
        redis.call('BITOP', 'AND', dest, dest, scratch)
      end
    end
  else
    return redis.error_reply('combine_segments: unknown op ' .. tostring(op))
  end
  redis.call('PEXPIRE', dest, ttl)
  a = a + 4 + p + n
end
redis.call('DEL', scratch)
if dest == nil then return {0} end
local out = {redis.call('BITCOUNT', dest)}
local from = 0
while #out <= k do
  local bit = redis.call('BITPOS', dest, 1, from, -1, 'BIT')
  if bit < 0 then break end
  out[#out + 1] = bit
  from = bit + 1
end
return out
