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
--
-- The new visitors' ordinals come from one INCRBY and go to the ordinal hash in a few
-- HSETs (two commands per visitor fewer than one INCR and one HSET each).

local HSET_PAIRS = 500  -- field/value pairs per HSET (unpack puts them on the Lua stack)
local ttl = tonumber(ARGV[1])
local new = {}
local seen = {}
for i = 3, #KEYS do
  if not seen[KEYS[i]] and redis.call('EXISTS', KEYS[i]) == 0 then new[#new + 1] = i end
  seen[KEYS[i]] = true
end
if #new == 0 then return 0 end
local first = redis.call('INCRBY', KEYS[1], #new) - #new
local pairs_ = {}
for j, i in ipairs(new) do
  local ordinal = first + j - 1
  local a = 2 + 2 * (i - 3)
  local blob = ARGV[a + 1]
  blob = string.sub(blob, 1, 16) .. struct.pack('<d', ordinal) .. string.sub(blob, 25)
  if ttl > 0 then
    redis.call('SET', KEYS[i], blob, 'EX', ttl)
  else
    redis.call('SET', KEYS[i], blob)
  end
  pairs_[#pairs_ + 1] = ordinal
  pairs_[#pairs_ + 1] = ARGV[a]
  if #pairs_ == 2 * HSET_PAIRS then
    redis.call('HSET', KEYS[2], unpack(pairs_))
    pairs_ = {}
  end
end
if #pairs_ > 0 then redis.call('HSET', KEYS[2], unpack(pairs_)) end
return #new
