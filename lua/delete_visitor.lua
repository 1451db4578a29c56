-- delete_visitor: erase every trace of one visitor (right to be forgotten), and tell
-- trigger subscribers it left each segment it was in.
--
-- KEYS[1]  profile           string (its header holds the visitor's ordinal, byte 16)
-- KEYS[2]  event ids         sorted set
-- KEYS[3]  shard ordinals    hash: ordinal -> visitor id
-- KEYS[4]  membership bitmap string: bit = segment slot
-- KEYS[5]  due               sorted set of the shard (the visitor is removed)
-- KEYS[6]  claimed           sorted set of the shard (the visitor is removed)
-- KEYS[7]  changes           the shard's change stream (exits are added to it)
-- KEYS[8..7+n]               the shard's bitmaps of every segment slot of the site
-- KEYS[8+n..]                the visitor's other keys (history, caps ...), deleted
-- ARGV[1]  visitor id
-- ARGV[2]  n
-- ARGV[3]  emit              "1": add an exit per segment the visitor was in (the site
--                            has trigger subscriptions), "0": add nothing
-- ARGV[4]  stream max length (approximate cap, as every writer of the stream)
-- ARGV[5]  now               epoch seconds
-- ARGV[6..5+n]               the segment id of each bitmap above ("": deleted, no exit)
-- Returns  {1 if a profile existed else 0, stream id of each exit added ...}
--
-- Every segment bit of the ordinal is cleared, not only the ones the visitor's own
-- bitmap names: static segments and segments deleted since keep bits too.

local n = tonumber(ARGV[2])
local emit = ARGV[3] == '1'
local out = {0}
local blob = redis.call('GET', KEYS[1])
if blob and #blob >= 24 then
  local ordinal = struct.unpack('<d', blob, 17)
  if ordinal == ordinal then
    if redis.call('HGET', KEYS[3], ordinal) == ARGV[1] then redis.call('HDEL', KEYS[3], ordinal) end
    for i = 1, n do
      local was = redis.call('SETBIT', KEYS[7 + i], ordinal, 0)
      if was == 1 and emit and ARGV[5 + i] ~= '' then
        out[#out + 1] = redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[4], '*', 'v', ARGV[1],
          's', ARGV[5 + i], 'c', 'exited', 't', ARGV[5], 'why', 'erase')
      end
    end
  end
end
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
for i = 8 + n, #KEYS do redis.call('DEL', KEYS[i]) end
if blob then out[1] = 1 end
return out
