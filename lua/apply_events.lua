-- apply_events: apply one batch of events to one visitor's profile, atomically.
--
-- KEYS[1]  profile           string, format 2 (segserver/profile/packed.py): a 24-byte
--                            header '<BBHI4dd' (FORMAT 2, 0, TTL day, IDHASH, VERSION,
--                            ORDINAL) and a MessagePack map {feature slot: number, or a
--                            window: a MessagePack string holding its array}. A format-1
--                            profile (the float64 feature vector itself) is read and
--                            written back as format 2.
-- KEYS[2]  event ids         string: u32 expiry (epoch seconds the key's TTL covers), then
--                            12-byte records (8-byte event key, u32 second seen), oldest
--                            first; records older than the dedup window are dropped when
--                            the key is rewritten (a sorted set of ids, the format before,
--                            is converted on the first write)
-- KEYS[3]  shard sequence    string counter: next dense ordinal of the visitor's shard
-- KEYS[4]  shard ordinals    hash: ordinal -> visitor id
-- KEYS[5]  membership bitmap string: bit = segment slot (read, for static segments)
-- KEYS[6]  caps              hash: frequency-cap counters (read, for decisions)
-- ARGV[1]  now               epoch seconds
-- ARGV[2]  dedup window      seconds an event id is remembered
-- ARGV[3]  profile ttl       seconds; 0 = keep forever
-- ARGV[4]  window slots      feature slots where the layout's window blocks start
--                            ("7,26,45"); read only to convert a format-1 profile
-- ARGV[5]  visitor id
-- ARGV[6]  id hash           32-bit hash of the visitor id (header IDHASH)
-- ARGV[7], ARGV[8], ...      per event: event key ("" = none; 8 bytes are the key itself,
--                            the first 8 bytes of SHA-1 of the event id, which
--                            segserver sends; any other string is the event id and is
--                            hashed here), ops (packed "<BBIdd" records: opcode, flags,
--                            byte offset in the feature vector, a, b; segserver/profile/ops.py)
-- Opcodes: 1 SET 2 ADD 3 SUB_FLOOR 4 MAX 5 MIN 6 SET_IF_MISSING 7 UNSET 8 WINDOW_ADD
--          9 CHECK_GAP 10 TAG_ADD 11 TAG_REMOVE 12 TAG_CLEAR; flag 1 = only after a gap;
--          a CHECK_GAP's flags // 2 = records right after it skipped unread without a gap.
-- Returns  {profile bytes ("" when the visitor has none), stored membership bitmap (nil
--          when none), caps (flat field/value list), status of event 1, ...}: 1 applied,
--          0 duplicate event id. With no events it only reads (and creates nothing).
--
-- Everything is computed first and written at the end, so an error part-way writes
-- nothing. The header's VERSION counts applied batches.
--
-- Costs (INFO commandstats, `segserver bench events`): cmsgpack unpacks and packs the
-- profile in C, keeps integers in their smallest form and floats as float32 when
-- exact; windows stay packed strings unless an event touches them, and a same-day count
-- is patched into the string's bytes. Closures and tables are made on every call, so
-- the script keeps few (event ids need none). TTLs are refreshed with EX only when due
-- (EX measured ~0.7 µs more than KEEPTTL or APPEND): the profile's once a day (it
-- expires between ttl - 1 day and ttl after its last write), the event ids' every
-- eighth of the window (they live at most 1.125 windows).

local RECORD = '<BBI4dd'
local RECORD_LEN = 22
local WINDOW_DAYS = 35
local F32_EXACT = 16777216  -- integers below 2^24 are exact in float32
local ID_LEN = 12

local now = tonumber(ARGV[1])
local dedup = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local today = math.floor(now / 86400)

-- A window as stored, from its head day and amounts by age ({[1 + age] = amount}):
-- dense [-head, amount at age 0, 1, ...] when more than half of the days are active,
-- else sparse [head, age, amount, age, amount ...].
local function pack_window(head, amounts)
  local count, span = 0, 0
  for i in pairs(amounts) do
    count = count + 1
    if i > span then span = i end
  end
  local t = {head}
  if span < 2 * count then
    t[1] = -head
    for i = 1, span do t[i + 1] = amounts[i] or 0 end
  else
    for i = 1, span do
      local x = amounts[i]
      if x then t[#t + 1] = i - 1; t[#t + 1] = x end
    end
  end
  return t
end

local blob = redis.call('GET', KEYS[1])
local p, version, ordinal, ttl_day
local created = false
local touched = {}  -- window slot -> its array, unpacked because an op changes it
if not blob then
  p, version, ttl_day, created = {}, 0, -1, true
elseif string.byte(blob, 1) == 2 then
  local _
  _, _, ttl_day, _, version, ordinal = struct.unpack('<BBHI4dd', blob)
  _, p = cmsgpack.unpack_one(blob, 24)
elseif string.byte(blob, 1) == 0 then  -- format 1: float64 slots, float32 window blocks
  p = {}
  local starts = {}
  for s in string.gmatch(ARGV[4], '%d+') do starts[tonumber(s)] = true end
  local slots = math.floor(#blob / 8)
  local slot = 4
  while slot < slots do
    if starts[slot] then
      if slot + 18 <= slots then
        local off = slot * 8
        local head = struct.unpack('<f', blob, off + 1)
        local amounts = {}
        local any = head ~= 0
        for age = 0, WINDOW_DAYS - 1 do
          local v = struct.unpack('<f', blob, off + 5 + ((head - age) % WINDOW_DAYS) * 4)
          if v ~= 0 then amounts[age + 1] = v; any = true end
        end
        if any then touched[slot] = pack_window(head, amounts) end
      end
      slot = slot + 18
    else
      local v = struct.unpack('<d', blob, slot * 8 + 1)
      if v == v then p[slot] = v end
      slot = slot + 1
    end
  end
  version, ordinal, ttl_day = struct.unpack('<d', blob, 9), struct.unpack('<d', blob, 17), -1
else
  return redis.error_reply('apply_events: unknown profile format')
end

local function window_add(slot, day, v)
  local t = touched[slot]
  if not t then
    t = p[slot]
    if t == nil then
      if v ~= math.floor(v) or v >= F32_EXACT or v <= -F32_EXACT then
        v = struct.unpack('<f', struct.pack('<f', v))  -- amounts are float32 in the vector
      end
      if v ~= 0 then t = {day, 0, v} else t = {day} end
      touched[slot] = t
      return
    end
    if type(t) == 'string' then
      -- the common case, a small count on the newest day: the amount's byte patched in
      -- place (a page view's window; unpacking and packing the string cost more)
      if v >= 1 and v < 128 and v == math.floor(v) then
        local s1, s2, s3, s4, s5, s6 = string.byte(t, 1, 6)
        if s1 >= 0x90 and s1 <= 0x9f then  -- a fixarray
          if s2 == 0xcd and s3 * 256 + s4 == day and s5 == 0 and s6 and s6 + v < 128 then
            p[slot] = string.sub(t, 1, 5) .. string.char(s6 + v) .. string.sub(t, 7)
            return  -- sparse [head (uint16), age 0, amount (fixint), ...]
          end
          if s2 == 0xd1 and 65536 - (s3 * 256 + s4) == day and s5 and s5 + v < 128 then
            p[slot] = string.sub(t, 1, 4) .. string.char(s5 + v) .. string.sub(t, 6)
            return  -- dense [-head (int16), amount at age 0 (fixint), ...]
          end
        end
      end
      t = cmsgpack.unpack(t)
    end
    touched[slot] = t
  end
  local first = t[1]
  local head = first
  if first < 0 then head = -first end
  local x
  -- the common case, another event on the newest day with an integer sum: in place
  if day == head then
    if first < 0 then
      x = (t[2] or 0) + v
    elseif t[2] == 0 then
      x = t[3] + v
    else
      x = v
    end
    if x == math.floor(x) and x < F32_EXACT and x > -F32_EXACT then
      if first < 0 then t[2] = x; return end
      if t[2] == 0 and x ~= 0 then t[3] = x; return end
      if t[2] ~= 0 and x ~= 0 then table.insert(t, 2, x); table.insert(t, 2, 0); return end
    end
  end
  if day <= head - WINDOW_DAYS then return end  -- older than the window
  -- a new day (once a day per window), a late event or a float sum: rebuilt
  local amounts = {}
  if first < 0 then
    for i = 2, #t do if t[i] ~= 0 then amounts[i - 1] = t[i] end end
  else
    for i = 2, #t, 2 do amounts[t[i] + 1] = t[i + 1] end
  end
  if day > head then
    local shift = day - head
    local moved = {}
    for i, a in pairs(amounts) do
      if i + shift <= WINDOW_DAYS then moved[i + shift] = a end
    end
    amounts, head = moved, day
  end
  local i = head - day + 1
  x = struct.unpack('<f', struct.pack('<f', (amounts[i] or 0) + v))
  if x == 0 then x = nil end
  amounts[i] = x
  touched[slot] = pack_window(head, amounts)
end

local function apply(ops)
  local gap = false
  local pos = 1
  while pos <= #ops do
    local code, flags, off, a, b = struct.unpack(RECORD, ops, pos)
    pos = pos + RECORD_LEN
    if flags % 2 == 0 or gap then
      local slot = off / 8
      if code == 1 then p[slot] = a
      elseif code == 2 then p[slot] = (p[slot] or 0) + a
      elseif code == 3 then p[slot] = math.max(0, (p[slot] or 0) - a)
      elseif code == 4 then
        local v = p[slot]; if v == nil or a > v then p[slot] = a end
      elseif code == 5 then
        local v = p[slot]; if v == nil or a < v then p[slot] = a end
      elseif code == 6 then
        if p[slot] == nil then p[slot] = a end
      elseif code == 7 then p[slot] = nil
      elseif code == 8 then window_add(slot, a, b)
      elseif code == 9 then
        local v = p[slot]; gap = v == nil or (a - v > b)
        if not gap then pos = pos + RECORD_LEN * math.floor(flags / 2) end
      elseif code >= 10 and code <= 12 then  -- tags: `a` slots of codes, oldest first
        local codes = {}
        for i = 0, a - 1 do
          local c = p[slot + i]
          if c ~= nil and not (code == 11 and c == b) then codes[#codes + 1] = c end
        end
        if code == 12 then codes = {} end
        if code == 10 then
          local found = false
          for _, c in ipairs(codes) do if c == b then found = true end end
          if not found then
            if #codes >= a then table.remove(codes, 1) end
            codes[#codes + 1] = b
          end
        end
        for i = 0, a - 1 do p[slot + i] = codes[i + 1] end
      else
        return 'apply_events: unknown opcode ' .. code
      end
    end
  end
end

-- Event ids: a plain find over the records (memchr speed, in C); a hit counts only at
-- a record boundary and while younger than the window. Read at the first event with an
-- id; `batch_keys` and `new_keys` exist only then (a bare page view needs neither).
local ids, batch_keys, new_keys
local cutoff = now - dedup
local statuses = {}
local applied = 0
for i = 7, #ARGV, 2 do
  local key = ARGV[i]
  local dup = false
  if key ~= '' then
    if #key ~= 8 then
      local h = redis.sha1hex(key)
      key = struct.pack('>I4I4', tonumber(string.sub(h, 1, 8), 16),
                        tonumber(string.sub(h, 9, 16), 16))
    end
    if ids == nil then
      batch_keys, new_keys = {}, {}
      ids = redis.pcall('GET', KEYS[2]) or ''
      if type(ids) == 'table' then
        -- a sorted set of raw ids (the format before): converted, written with the batch
        local old = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. cutoff, '+inf', 'WITHSCORES')
        local parts = {struct.pack('<I4', 0)}
        for j = 1, #old, 2 do
          local h = redis.sha1hex(old[j])
          parts[#parts + 1] = struct.pack('>I4I4<I4', tonumber(string.sub(h, 1, 8), 16),
                                          tonumber(string.sub(h, 9, 16), 16),
                                          math.ceil(tonumber(old[j + 1])))
        end
        ids = table.concat(parts)
      end
    end
    dup = batch_keys[key]
    local pos = 5
    while not dup do
      local at = string.find(ids, key, pos, true)
      if not at then break end
      dup = at % ID_LEN == 5 and struct.unpack('<I4', ids, at + 8) > cutoff
      pos = at + 1
    end
  end
  if dup then
    statuses[#statuses + 1] = 0
  else
    if key ~= '' then
      batch_keys[key] = true
      new_keys[#new_keys + 1] = key
    end
    local err = apply(ARGV[i + 1])
    if err then return redis.error_reply(err) end
    statuses[#statuses + 1] = 1
    applied = applied + 1
  end
end

if applied > 0 then
  if created then
    ordinal = redis.call('INCR', KEYS[3]) - 1
    redis.call('HSET', KEYS[4], ordinal, ARGV[5])
  end
  for slot, t in pairs(touched) do p[slot] = cmsgpack.pack(t) end
  local refresh = ttl > 0 and ttl_day ~= today
  if refresh then ttl_day = today end
  blob = struct.pack('<BBHI4dd', 2, 0, math.max(ttl_day, 0), tonumber(ARGV[6]), version + 1,
                     ordinal) .. cmsgpack.pack(p)
  if refresh then
    redis.call('SET', KEYS[1], blob, 'EX', ttl)
  elseif ttl > 0 then
    redis.call('SET', KEYS[1], blob, 'KEEPTTL')
  else
    redis.call('SET', KEYS[1], blob)
  end
  if new_keys and #new_keys > 0 then
    -- seconds rounded up: an id is remembered at least the whole window
    local stamp = struct.pack('<I4', math.ceil(now))
    local records = table.concat(new_keys, stamp) .. stamp
    local expiry = #ids >= 4 and struct.unpack('<I4', ids, 1) or 0
    if expiry >= now + dedup then
      redis.call('APPEND', KEYS[2], records)
    else  -- rewrite: expired records dropped, the TTL set for another eighth window
      local slack = math.ceil(dedup / 8)
      local keep = 5
      while keep < #ids and struct.unpack('<I4', ids, keep + 8) <= cutoff do
        keep = keep + ID_LEN
      end
      redis.call('SET', KEYS[2], struct.pack('<I4', math.ceil(now) + dedup + slack)
                 .. string.sub(ids, keep) .. records, 'EX', dedup + slack)
    end
  end
end

local out = {blob or '', redis.call('GET', KEYS[5]), redis.call('HGETALL', KEYS[6])}
for _, s in ipairs(statuses) do out[#out + 1] = s end
return out
