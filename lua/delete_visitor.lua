-- delete_visitor: erase every key of one visitor (right to be forgotten).
--
-- KEYS[1]  profile           string (its header holds the visitor's ordinal)
-- KEYS[2]  event ids         sorted set
-- KEYS[3]  shard ordinals    hash: ordinal -> visitor id
-- KEYS[4]  membership bitmap string: bit = segment slot
-- KEYS[5]  due               sorted set of the shard (the visitor is removed)
-- KEYS[6]  claimed           sorted set of the shard (the visitor is removed)
-- KEYS[7..6+n]               the shard's bitmaps of the segments the caller read as set
-- KEYS[7+n..]                the visitor's other keys (history, caps ...), deleted as they are
-- ARGV[1]  visitor id
-- ARGV[2]  n
-- ARGV[3]  the membership bitmap the caller read (the bitmaps above are its set bits)
-- Returns  1 if a profile existed, 0 if not, -1 if the membership changed since the
--          caller read it (read again and retry).

local n = tonumber(ARGV[2])
if (redis.call('GET', KEYS[4]) or '') ~= ARGV[3] then return -1 end
local blob = redis.call('GET', KEYS[1])
if blob and #blob >= 24 then
  local ordinal = struct.unpack('<d', blob, 17)
  if ordinal == ordinal then
    redis.call('HDEL', KEYS[3], ordinal)
    for i = 7, 6 + n do redis.call('SETBIT', KEYS[i], ordinal, 0) end
  end
end
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
for i = 7 + n, #KEYS do redis.call('DEL', KEYS[i]) end
if blob then return 1 end
return 0
