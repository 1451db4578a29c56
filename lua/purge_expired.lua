-- purge_expired: the clean-up after profiles expired by TTL, for visitors of one shard:
-- what erasure removes (ordinal, segment bits, due entries, side keys), with an exit per
-- segment each was in. A visitor whose profile exists again (a new event recreated it
-- under a new ordinal) keeps everything but its old ordinal.
--
-- KEYS[1]  shard ordinals    hash: ordinal -> visitor id
-- KEYS[2]  due               sorted set of the shard
-- KEYS[3]  claimed           sorted set of the shard
-- KEYS[4]  changes           the shard's change stream
-- KEYS[5..4+n]               the shard's bitmaps of every segment slot of the site
-- KEYS[5+n..]                per visitor, k keys: its profile first (header: ordinal at
--                            byte 16, float64), then its side keys
-- ARGV[1]  n
-- ARGV[2]  k                 keys per visitor
-- ARGV[3]  emit              "1": add exits (the site has trigger subscriptions)
-- ARGV[4]  stream max length
-- ARGV[5]  now               epoch seconds
-- ARGV[6..5+n]               the segment id of each bitmap ("": deleted, no exit)
-- ARGV[6+n..]                per visitor: ordinal, visitor id
-- Returns  {visitors purged, stream id of each exit added ...}

local n, k = tonumber(ARGV[1]), tonumber(ARGV[2])
local emit = ARGV[3] == '1'
local out = {0}
local v = 0
local a = 6 + n
while a <= #ARGV do
  local ordinal, vid = ARGV[a], ARGV[a + 1]
  local base = 4 + n + v * k
  local blob = redis.call('GETRANGE', KEYS[base + 1], 16, 23)
  local current = #blob == 8 and struct.unpack('<d', blob) or nil
  if redis.call('HGET', KEYS[1], ordinal) == vid and current ~= tonumber(ordinal) then
    redis.call('HDEL', KEYS[1], ordinal)
    for i = 1, n do
      local was = redis.call('SETBIT', KEYS[4 + i], tonumber(ordinal), 0)
      if was == 1 and emit and ARGV[5 + i] ~= '' then
        out[#out + 1] = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'v', vid,
          's', ARGV[5 + i], 'c', 'exited', 't', ARGV[5], 'why', 'expired')
      end
    end
    if current == nil then
      redis.call('ZREM', KEYS[2], vid)
      redis.call('ZREM', KEYS[3], vid)
      for i = 1, k do redis.call('DEL', KEYS[base + i]) end
    end
    out[1] = out[1] + 1
  end
  v = v + 1
  a = a + 2
end
return out
