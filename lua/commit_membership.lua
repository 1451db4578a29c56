-- commit_membership: store evaluated segment membership for visitors of one shard.
--
-- KEYS[1]  changes stream    XADD v s c t why (capped, MAXLEN ~ ARGV[3])
-- KEYS[2]  due               sorted set: visitor -> next instant a time condition may flip
-- KEYS[3]  claimed           sorted set: visitor -> lease end (scheduler); cleared here
-- KEYS[4 .. 3+S]             the shard's bitmaps of the S evaluated segments (bit = ordinal)
-- KEYS[4+S+3i ..]            visitor i: membership hash (v, t), bitmap by slot, history list
-- ARGV[1]  now               epoch seconds (stream and history time)
-- ARGV[2]  cause             event | expiry | recompute | edit
-- ARGV[3]  stream max length
-- ARGV[4]  history length per visitor
-- ARGV[5]  ttl               seconds the visitor's keys live (0 = forever)
-- ARGV[6]  S                 number of evaluated segments
-- ARGV[7 .. 6+S]             their stable slots; ARGV[7+S .. 6+2S] their ids
-- then per visitor: id, ordinal, profile version, evaluation time, next change
--          ("inf" = none), and S characters '0'/'1': in each evaluated segment or not
-- Returns  per visitor 1 committed, 0 skipped (a newer evaluation is already stored).
--
-- The version guard: (profile version, evaluation time) only moves forward, so a
-- stale evaluation never overwrites a newer one. The diff is taken here against the
-- stored bitmap, inside the same atomic call that flips the segment bitmaps, so the
-- visitor's bitset and the bitmaps always agree. Slots not evaluated (static or
-- archived segments) are left as they are.

local now, cause = ARGV[1], ARGV[2]
local maxlen, history_len, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local s = tonumber(ARGV[6])
local slots, ids = {}, {}
for j = 1, s do
  slots[j] = tonumber(ARGV[6 + j])
  ids[j] = ARGV[6 + s + j]
end

local function getbit(str, i)
  local byte = string.byte(str, math.floor(i / 8) + 1) or 0
  return bit.band(bit.rshift(byte, 7 - i % 8), 1)
end

local out = {}
local a = 7 + 2 * s
local i = 0
while a <= #ARGV do
  local vid, ordinal = ARGV[a], tonumber(ARGV[a + 1])
  local pv, t, next_change, values = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4], ARGV[a + 5]
  local mkey, bkey, hkey = KEYS[4 + s + 3 * i], KEYS[5 + s + 3 * i], KEYS[6 + s + 3 * i]
  local stored = redis.call('HMGET', mkey, 'v', 't')
  local spv, st = tonumber(stored[1]) or -1, tonumber(stored[2]) or -1
  if spv > pv or (spv == pv and st > t) then
    out[#out + 1] = 0
  else
    redis.call('HSET', mkey, 'v', ARGV[a + 2], 't', ARGV[a + 3])
    local bits = redis.call('GET', bkey) or ''
    local moved = 0
    for j = 1, s do
      local new = string.byte(values, j) - 48
      if getbit(bits, slots[j]) ~= new then
        redis.call('SETBIT', bkey, slots[j], new)
        redis.call('SETBIT', KEYS[3 + j], ordinal, new)
        local change = 'exited'
        if new == 1 then change = 'entered' end
        redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
                   'v', vid, 's', ids[j], 'c', change, 't', now, 'why', cause)
        redis.call('LPUSH', hkey, now .. '|' .. change .. '|' .. ids[j] .. '|' .. cause)
        moved = moved + 1
      end
    end
    if moved > 0 then redis.call('LTRIM', hkey, 0, history_len - 1) end
    if ttl > 0 then
      redis.call('EXPIRE', mkey, ttl)
      if moved > 0 then redis.call('EXPIRE', hkey, ttl) end
      if redis.call('EXISTS', bkey) == 1 then redis.call('EXPIRE', bkey, ttl) end
    end
    if next_change == 'inf' then
      redis.call('ZREM', KEYS[2], vid)
    else
      redis.call('ZADD', KEYS[2], next_change, vid)
    end
    redis.call('ZREM', KEYS[3], vid)
    out[#out + 1] = 1
  end
  a = a + 6
  i = i + 1
end
return out
