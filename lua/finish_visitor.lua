-- finish_visitor: everything one visitor's page view (or event batch) writes after its
-- events were applied and it was evaluated, in one atomic call: the second and last
-- Redis round trip of a page view (DESIGN.md "The page view budget").
--
-- KEYS[1]  changes stream    shard stream of entries/exits: XADD v s c t why
-- KEYS[2]  due               shard sorted set: visitor -> next instant a time test may flip
-- KEYS[3]  claimed           shard sorted set: visitor -> scheduler lease end (cleared here)
-- KEYS[4]  membership        hash of the visitor: v (profile version), t (evaluation time)
-- KEYS[5]  bits              the visitor's stored membership bitmap (bit = segment slot)
-- KEYS[6]  history           list of the visitor's entries/exits, newest first
-- KEYS[7]  caps              hash of the visitor's frequency-cap counters
-- KEYS[8]  arms              hash of the visitor's campaign arms (storage/results.py)
-- KEYS[9]  recent            list of the visitor's recently viewed products
-- KEYS[10] feedback          hash of the visitor: <token id>|<kind> already counted
-- KEYS[11 ..]                keys addressed by index below: shard segment bitmaps,
--                            campaign result hashes, daily popularity sorted sets
-- Every key carries the visitor's shard hash tag: one slot on a cluster.
--
-- ARGV[1]  now               epoch seconds
-- ARGV[2]  ttl               seconds the visitor's keys live after this write (0 = forever)
-- Section M, membership:     1 then cause, stream max length, history length, visitor id,
--                            ordinal, profile version, evaluation time, next change ("inf"
--                            = none), the stored bitmap the caller diffed against (what the
--                            first round trip read), F, then F x (key index of the shard's
--                            segment bitmap, slot, new bit 0|1, segment id); or 0 (no commit)
-- Section O, outcomes:       T, seconds the feedback hash lives, T x (key index of the
--                            campaign's results, variant, kind: impression|click|dismiss|
--                            conversion, token id: counted once per token and kind);
--                            then G, G x (key index,
--                            campaign, event time, value) goal candidates
-- Section S, served:         caps ttl, current session, day, week; N, then N x (campaign,
--                            arm (variant id or "_holdout"), key index of the campaign's
--                            results, n, n x (cap field, max; max 0 = only counted))
-- Section R, recommendations: recent length, V, V x product id viewed (oldest first);
--                            P, P x (key index of a popularity sorted set, product, amount,
--                            seconds the set lives)
-- Returns  {membership, conversions, served 1 ..., served N}: membership 1 committed,
--          0 skipped (a newer evaluation is stored), -1 not written because the stored
--          bitmap changed since it was read (the caller commits with
--          lua/commit_membership.lua, which diffs inside the script), 2 not asked;
--          conversions counted; per served item 1 (caps reserved, exposure recorded) or
--          0 (a cap was reached meanwhile: nothing counted for it).
--
-- Order inside the call: outcomes before exposures, so an event of this page view never
-- converts for an exposure this same page view makes (it happened before it).
-- Concurrent page views of one visitor race on the caps; this call is where the race is
-- settled: a cap is never exceeded (the caller decides again for what lost).

local now = ARGV[1]
local ttl = tonumber(ARGV[2])
local a = 3
local out = {2, 0}

local function getbit(str, i)
  local byte = string.byte(str, math.floor(i / 8) + 1) or 0
  return bit.band(bit.rshift(byte, 7 - i % 8), 1)
end

-- M: membership (version-guarded; flips only what changed)
if ARGV[a] == '1' then
  local cause, maxlen, history_len = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local vid, ordinal = ARGV[a + 4], tonumber(ARGV[a + 5])
  local pv_text, t_text, next_change = ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
  local pv, t = tonumber(pv_text), tonumber(t_text)
  local expected, flips = ARGV[a + 9], tonumber(ARGV[a + 10])
  a = a + 11
  local stored = redis.call('HMGET', KEYS[4], 'v', 't')
  local spv, st = tonumber(stored[1]) or -1, tonumber(stored[2]) or -1
  if spv > pv or (spv == pv and st > t) then
    out[1] = 0
  elseif (redis.call('GET', KEYS[5]) or '') ~= expected then
    out[1] = -1
  else
    redis.call('HSET', KEYS[4], 'v', pv_text, 't', t_text)
    for _ = 1, flips do
      local key, slot, new, sid = KEYS[tonumber(ARGV[a])], tonumber(ARGV[a + 1]),
        tonumber(ARGV[a + 2]), ARGV[a + 3]
      if getbit(expected, slot) ~= new then
        redis.call('SETBIT', KEYS[5], slot, new)
        redis.call('SETBIT', key, ordinal, new)
        local change = new == 1 and 'entered' or 'exited'
        redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
                   'v', vid, 's', sid, 'c', change, 't', now, 'why', cause)
        redis.call('LPUSH', KEYS[6], now .. '|' .. change .. '|' .. sid .. '|' .. cause)
      end
      a = a + 4
    end
    if flips > 0 then redis.call('LTRIM', KEYS[6], 0, history_len - 1) end
    if ttl > 0 then
      redis.call('EXPIRE', KEYS[4], ttl)
      if flips > 0 then redis.call('EXPIRE', KEYS[6], ttl) end
      if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('EXPIRE', KEYS[5], ttl) end
    end
    if next_change == 'inf' then
      redis.call('ZREM', KEYS[2], vid)
    else
      redis.call('ZADD', KEYS[2], next_change, vid)
    end
    redis.call('ZREM', KEYS[3], vid)
    out[1] = 1
  end
  if out[1] ~= 1 then a = a + 4 * flips end
else
  a = a + 1
end

-- O: outcomes (feedback by token, goal conversions for the arm of the first exposure)
local touched_arms = false
local n = tonumber(ARGV[a])
local feedback_ttl = ARGV[a + 1]
a = a + 2
for _ = 1, n do
  if redis.call('HSETNX', KEYS[10], ARGV[a + 3] .. '|' .. ARGV[a + 2], 1) == 1 then
    redis.call('HINCRBY', KEYS[tonumber(ARGV[a])], ARGV[a + 1] .. '|' .. ARGV[a + 2], 1)
  end
  a = a + 4
end
if n > 0 then redis.call('EXPIRE', KEYS[10], feedback_ttl) end
n = tonumber(ARGV[a])
a = a + 1
for _ = 1, n do
  local key, campaign, ts, value = KEYS[tonumber(ARGV[a])], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  a = a + 4
  local arm = redis.call('HGET', KEYS[8], campaign)
  if arm then
    local exposed = tonumber(redis.call('HGET', KEYS[8], campaign .. '|t') or '0')
    if tonumber(ts) > exposed and redis.call('HSETNX', KEYS[8], campaign .. '|c', 1) == 1 then
      redis.call('HINCRBY', key, arm .. '|conversions', 1)
      if tonumber(value) ~= 0 then redis.call('HINCRBYFLOAT', key, arm .. '|value', value) end
      out[2] = out[2] + 1
      touched_arms = true
    end
  end
end

-- S: served decisions (reserve caps, record the first exposure per campaign)
local caps_ttl = tonumber(ARGV[a])
local current = {session = ARGV[a + 1], day = ARGV[a + 2], week = ARGV[a + 3]}
n = tonumber(ARGV[a + 4])
a = a + 5
local counted = false
for _ = 1, n do
  local campaign, arm, key, m = ARGV[a], ARGV[a + 1], KEYS[tonumber(ARGV[a + 2])],
    tonumber(ARGV[a + 3])
  local ok = true
  for p = 1, m do
    local max = tonumber(ARGV[a + 3 + 2 * p])
    if max > 0 and (tonumber(redis.call('HGET', KEYS[7], ARGV[a + 2 + 2 * p])) or 0) >= max then
      ok = false
    end
  end
  if ok then
    for p = 1, m do redis.call('HINCRBY', KEYS[7], ARGV[a + 2 + 2 * p], 1) end
    counted = counted or m > 0
    if redis.call('HSETNX', KEYS[8], campaign, arm) == 1 then
      redis.call('HSET', KEYS[8], campaign .. '|t', now)
      redis.call('HINCRBY', key, arm .. '|exposed', 1)
      touched_arms = true
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  a = a + 4 + 2 * m
end
if counted then
  if redis.call('HLEN', KEYS[7]) > 32 then  -- drop the counters of past periods
    for _, f in ipairs(redis.call('HKEYS', KEYS[7])) do
      local per, period = string.match(f, '|(%a+)|(%-?%d+)$')
      if per and per ~= 'lifetime' and current[per] ~= period then redis.call('HDEL', KEYS[7], f) end
    end
  end
  redis.call('EXPIRE', KEYS[7], caps_ttl)
end
if touched_arms and ttl > 0 then redis.call('EXPIRE', KEYS[8], ttl) end

-- R: recommendation signals
local length = tonumber(ARGV[a])
n = tonumber(ARGV[a + 1])
a = a + 2
for _ = 1, n do
  redis.call('LREM', KEYS[9], 0, ARGV[a])
  redis.call('LPUSH', KEYS[9], ARGV[a])
  a = a + 1
end
if n > 0 then
  redis.call('LTRIM', KEYS[9], 0, length - 1)
  if ttl > 0 then redis.call('EXPIRE', KEYS[9], ttl) end
end
n = tonumber(ARGV[a])
a = a + 1
for _ = 1, n do
  local key = KEYS[tonumber(ARGV[a])]
  redis.call('ZINCRBY', key, ARGV[a + 2], ARGV[a + 1])
  redis.call('EXPIRE', key, ARGV[a + 3])
  a = a + 4
end
return out
