-- push_recent: add product views to a visitor's recently viewed list.
--
-- KEYS[1]        recent    list of the visitor: product ids, most recent first, unique
-- ARGV[1]        length    products kept
-- ARGV[2]        ttl       seconds the list lives after the last view (0 = forever)
-- ARGV[3 ..]     product ids viewed, oldest first
-- Returns  the list's length.
--
-- A product viewed again moves to the front instead of appearing twice; in one
-- script, concurrent page views of the visitor cannot leave duplicates.

local length, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, #ARGV do
  redis.call('LREM', KEYS[1], 0, ARGV[i])
  redis.call('LPUSH', KEYS[1], ARGV[i])
end
redis.call('LTRIM', KEYS[1], 0, length - 1)
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return redis.call('LLEN', KEYS[1])
