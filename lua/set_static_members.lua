-- set_static_members: write the members of a static segment in one shard, atomically:
-- the segment's shard bitmap and each visitor's own bitmap (by slot) together.
--
-- KEYS[1]              the static segment's bitmap of this shard (bit = visitor ordinal)
-- KEYS[2 .. 1+R]       bitmaps (by slot) of the R current members to remove
-- KEYS[2+R+2i ..]      visitor i to add: its profile, its bitmap (by slot)
-- ARGV[1]  slot        the static segment's stable slot
-- ARGV[2]  R           members to remove ("replace"; 0 for "add")
-- ARGV[3]  snapshot    the segment bitmap the removals were computed from ("" if R = 0
--                      and the caller does not replace)
-- ARGV[4]  replace     "1": the bitmap must still equal the snapshot, else nothing is
--                      written and -1 is returned (the caller reads again and retries)
-- ARGV[5]  ttl         seconds the visitors' bitmaps live (0 = forever)
-- ARGV[6 .. 5+R]       ordinals of the members to remove
-- Returns  {added, index (0-based) of each visitor to add that has no profile}
--
-- The ordinal of a visitor to add is read from its profile header (byte 16, float64,
-- NaN = none), so a visitor erased meanwhile is reported, never half-added.

local slot, r = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl = tonumber(ARGV[5])
local bitmap = KEYS[1]
if ARGV[4] == '1' then
  local current = redis.call('GET', bitmap) or ''
  if current ~= ARGV[3] then return -1 end
end
for i = 1, r do
  redis.call('SETBIT', bitmap, tonumber(ARGV[5 + i]), 0)
  redis.call('SETBIT', KEYS[1 + i], slot, 0)
end
local out = {0}
local i = 0
local base = 2 + r
while base + 2 * i + 1 <= #KEYS do
  local head = redis.call('GETRANGE', KEYS[base + 2 * i], 16, 23)
  local ordinal = nil
  if #head == 8 then
    local v = struct.unpack('<d', head)
    if v == v then ordinal = v end
  end
  if ordinal == nil then
    out[#out + 1] = i
  else
    local bkey = KEYS[base + 2 * i + 1]
    redis.call('SETBIT', bitmap, ordinal, 1)
    redis.call('SETBIT', bkey, slot, 1)
    if ttl > 0 then redis.call('EXPIRE', bkey, ttl) end
    out[1] = out[1] + 1
  end
  i = i + 1
end
return out
