-- overlap_segments: member counts of every pair of segments within one shard.
--
-- KEYS[1]          scratch key (this shard's tag), deleted before returning
-- KEYS[2 .. 1+n]   the shard's bitmaps of the n segments (bit = visitor ordinal)
-- ARGV             none
-- Returns  the upper triangle, row by row, diagonal included:
--          {|s1|, |s1 & s2|, ..., |s1 & sn|, |s2|, |s2 & s3|, ..., |sn|}

local n = #KEYS - 1
local scratch = KEYS[1]
local out = {}
for i = 1, n do
  out[#out + 1] = redis.call('BITCOUNT', KEYS[1 + i])
  for j = i + 1, n do
    redis.call('BITOP', 'AND', scratch, KEYS[1 + i], KEYS[1 + j])
    out[#out + 1] = redis.call('BITCOUNT', scratch)
  end
end
redis.call('DEL', scratch)
return out
