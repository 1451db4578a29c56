-- write_record: save or delete a catalogue record if its version is the expected one.
--
-- KEYS[1]  record            hash (a redis-om HashModel's key: fields as redis-om stores them)
-- KEYS[2]  history           list of previous versions (JSON), newest first
-- KEYS[3]  ids               set of the ids of this kind in the site
-- KEYS[4]  catalogue version string counter of the site (what caches compare)
-- ARGV[1]  expected version  "" = the record must not exist yet
-- ARGV[2]  mode              "save" | "delete"
-- ARGV[3]  id
-- ARGV[4]  previous          JSON of the version being replaced ("" = keep none)
-- ARGV[5]  history length
-- ARGV[6..] field, value, field, value ... (save)
-- Returns  {1, new catalogue version} done, or {0, stored version or ""} when the stored
--          version is not the expected one (a concurrent edit: nothing written).
--
-- One script instead of WATCH/MULTI: atomic on a single node and on a cluster alike
-- (every key carries the site's hash tag).

local stored = redis.call('HGET', KEYS[1], 'version')
local expected = ARGV[1]
if (expected == '' and stored) or (expected ~= '' and stored ~= expected) then
  return {0, stored or ''}
end
if ARGV[2] == 'delete' then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[3])
else
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 6))
  redis.call('SADD', KEYS[3], ARGV[3])
  if ARGV[4] ~= '' then
    redis.call('LPUSH', KEYS[2], ARGV[4])
    redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
  end
end
return {1, redis.call('INCR', KEYS[4])}
