-- seed_profiles: store new visitors' profiles of one shard (bulk demo seeding), with
-- the first-sight bookkeeping lua/apply_events.lua does when it creates a profile.
--
-- KEYS[1]  shard sequence    string counter: next dense ordinal of the shard
-- KEYS[2]  shard ordinals    hash: ordinal -> visitor id
-- KEYS[3 ..]                 the visitors' profile keys, in ARGV order
-- ARGV[1]  profile ttl       seconds; 0 = keep forever
-- ARGV[2 ..]                 per visitor: id, profile bytes (format 2 of
--                            segserver/profile/packed.py, IDHASH filled; ORDINAL, the
--                            float64 at byte 16 in both formats, is overwritten here)
-- Returns  how many profiles were created (a visitor that already has a profile is
--          left untouched and gets no new ordinal).

local ttl = tonumber(ARGV[1])
local created = 0
for i = 3, #KEYS do
  local a = 2 + 2 * (i - 3)
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local ordinal = redis.call('INCR', KEYS[1]) - 1
    local blob = ARGV[a + 1]
    blob = string.sub(blob, 1, 16) .. struct.pack('<d', ordinal) .. string.sub(blob, 25)
    if ttl > 0 then
      redis.call('SET', KEYS[i], blob, 'EX', ttl)
    else
      redis.call('SET', KEYS[i], blob)
    end
    redis.call('HSET', KEYS[2], ordinal, ARGV[a])
    created = created + 1
  end
end
return created
