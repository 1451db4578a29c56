-- apply_events: apply one batch of events to one visitor's profile, atomically.
--
-- KEYS[1]  profile           string, the fixed binary layout (segserver/profile/schema.py)
-- KEYS[2]  event ids         sorted set: event_id -> time seen (seconds), for idempotency
-- KEYS[3]  shard sequence    string counter: next dense ordinal of the visitor's shard
-- KEYS[4]  shard ordinals    hash: ordinal -> visitor id
-- KEYS[5]  membership bitmap string: bit = segment slot (read, for static segments)
-- KEYS[6]  caps              hash: frequency-cap counters (read, for decisions)
-- ARGV[1]  now               epoch seconds
-- ARGV[2]  dedup window      seconds an event id is remembered
-- ARGV[3]  profile ttl       seconds; 0 = keep forever
-- ARGV[4]  template          bytes of an empty profile of the current layout
-- ARGV[5]  visitor id
-- ARGV[6]  id hash           32-bit hash of the visitor id (header IDHASH)
-- ARGV[7], ARGV[8], ...      per event: event id ("" = none), ops (packed "<BBIdd" records:
--                            opcode, flags, byte offset, a, b; see segserver/profile/ops.py)
-- Opcodes: 1 SET 2 ADD 3 SUB_FLOOR 4 MAX 5 MIN 6 SET_IF_MISSING 7 UNSET 8 WINDOW_ADD
--          9 CHECK_GAP 10 TAG_ADD 11 TAG_REMOVE 12 TAG_CLEAR; flag 1 = only after a gap.
-- Returns  {profile bytes, stored membership bitmap (nil when none), caps (flat
--          field/value list), status of event 1, ...}: 1 applied, 0 duplicate event id.
--          With no events it only reads (and creates nothing).
--
-- Everything is computed first and written at the end, so an error part-way
-- writes nothing. The header's VERSION counts applied batches.

local EVENT_IDS_MAX = 2048
local RECORD = '<BBI4dd'
local RECORD_LEN = 22
local WINDOW_DAYS = 35

local blob = redis.call('GET', KEYS[1])
local template = ARGV[4]
local created = false
if not blob then
  blob = template
  created = true
elseif #blob < #template then
  blob = blob .. string.sub(template, #blob + 1)
end

-- Writes are collected by byte offset and spliced into the profile once, at the
-- end: rebuilding the 1.3 KB string on every write cost ~60 µs per page view.
local writes = {}
local function rd(off)
  local w = writes[off]
  if w then return (struct.unpack('<d', w)) end
  return (struct.unpack('<d', blob, off + 1))
end
local function wr(off, v) writes[off] = struct.pack('<d', v) end
local function rdf(off)
  local w = writes[off]
  if w then return (struct.unpack('<f', w)) end
  return (struct.unpack('<f', blob, off + 1))
end
local function wrf(off, v) writes[off] = struct.pack('<f', v) end
local function splice()
  local offsets = {}
  for off in pairs(writes) do offsets[#offsets + 1] = off end
  table.sort(offsets)
  local parts = {}
  local pos = 0
  for _, off in ipairs(offsets) do
    local w = writes[off]
    parts[#parts + 1] = string.sub(blob, pos + 1, off)
    parts[#parts + 1] = w
    pos = off + #w
  end
  parts[#parts + 1] = string.sub(blob, pos + 1)
  return table.concat(parts)
end
local function missing(v) return v ~= v end

local function window_add(off, day, v)
  local head = rdf(off)
  if day > head then
    if head > 0 then  -- head 0: a block never written, already all zero
      for d = math.max(head + 1, day - WINDOW_DAYS + 1), day do
        wrf(off + 4 + (d % WINDOW_DAYS) * 4, 0)
      end
    end
    wrf(off, day)
    head = day
  end
  if day > head - WINDOW_DAYS then
    local p = off + 4 + (day % WINDOW_DAYS) * 4
    wrf(p, rdf(p) + v)
  end
end

local function tag_slots(off, n)
  local codes = {}
  for i = 0, n - 1 do
    local c = rd(off + 8 * i)
    if not missing(c) then codes[#codes + 1] = c end
  end
  return codes
end

local function tag_write(off, n, codes)
  for i = 0, n - 1 do
    local c = codes[i + 1]
    if c == nil then c = 0 / 0 end
    wr(off + 8 * i, c)
  end
end

local function apply(ops)
  local gap = false
  local pos = 1
  while pos <= #ops do
    local code, flags, off, a, b = struct.unpack(RECORD, ops, pos)
    pos = pos + RECORD_LEN
    if flags % 2 == 0 or gap then
      if code == 1 then wr(off, a)
      elseif code == 2 then
        local v = rd(off); if missing(v) then v = 0 end; wr(off, v + a)
      elseif code == 3 then
        local v = rd(off); if missing(v) then v = 0 end; wr(off, math.max(0, v - a))
      elseif code == 4 then
        local v = rd(off); if missing(v) or a > v then wr(off, a) end
      elseif code == 5 then
        local v = rd(off); if missing(v) or a < v then wr(off, a) end
      elseif code == 6 then
        if missing(rd(off)) then wr(off, a) end
      elseif code == 7 then wr(off, 0 / 0)
      elseif code == 8 then window_add(off, a, b)
      elseif code == 9 then
        local v = rd(off); gap = missing(v) or (a - v > b)
      elseif code == 10 then
        local codes = tag_slots(off, a)
        local found = false
        for _, c in ipairs(codes) do if c == b then found = true end end
        if not found then
          if #codes >= a then table.remove(codes, 1) end
          codes[#codes + 1] = b
          tag_write(off, a, codes)
        end
      elseif code == 11 then
        local kept = {}
        for _, c in ipairs(tag_slots(off, a)) do if c ~= b then kept[#kept + 1] = c end end
        tag_write(off, a, kept)
      elseif code == 12 then tag_write(off, a, {})
      else
        return redis.error_reply('apply_events: unknown opcode ' .. code)
      end
    end
  end
end

local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local statuses = {}
local batch_ids = {}
local new_ids = {}
local applied = 0
for i = 7, #ARGV, 2 do
  local eid = ARGV[i]
  local dup = false
  if eid ~= '' then
    local seen = redis.call('ZSCORE', KEYS[2], eid)
    dup = batch_ids[eid] or (seen ~= false and tonumber(seen) > now - window)
  end
  if dup then
    statuses[#statuses + 1] = 0
  else
    if eid ~= '' then
      batch_ids[eid] = true
      new_ids[#new_ids + 1] = eid
    end
    local err = apply(ARGV[i + 1])
    if err then return err end
    statuses[#statuses + 1] = 1
    applied = applied + 1
  end
end

if applied > 0 then
  if created then
    local ordinal = redis.call('INCR', KEYS[3]) - 1
    wr(16, ordinal)
    wr(24, tonumber(ARGV[6]))
    redis.call('HSET', KEYS[4], ordinal, ARGV[5])
  end
  wr(8, rd(8) + 1)
  blob = splice()
  local ttl = tonumber(ARGV[3])
  if ttl > 0 then
    redis.call('SET', KEYS[1], blob, 'EX', ttl)
  else
    redis.call('SET', KEYS[1], blob)
  end
  if #new_ids > 0 then
    for _, eid in ipairs(new_ids) do redis.call('ZADD', KEYS[2], now, eid) end
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -EVENT_IDS_MAX - 1)
    redis.call('EXPIRE', KEYS[2], window)
  end
end

local out = {blob, redis.call('GET', KEYS[5]), redis.call('HGETALL', KEYS[6])}
for _, s in ipairs(statuses) do out[#out + 1] = s end
return out
