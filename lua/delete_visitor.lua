-- delete_visitor: erase every key of one visitor (right to be forgotten).
--
-- KEYS[1]  profile           string (its header holds the visitor's ordinal)
-- KEYS[2]  event ids         sorted set
-- KEYS[3]  shard ordinals    hash: ordinal -> visitor id
-- KEYS[4..n]                 the visitor's other keys (caps, history ...), deleted as they are
-- Returns  1 if a profile existed, else 0.

local blob = redis.call('GET', KEYS[1])
if blob and #blob >= 24 then
  local ordinal = struct.unpack('<d', blob, 17)
  if ordinal == ordinal then redis.call('HDEL', KEYS[3], ordinal) end
end
for i = 1, #KEYS do
  if i ~= 3 then redis.call('DEL', KEYS[i]) end
end
if blob then return 1 end
return 0
