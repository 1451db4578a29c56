-- assign_codes: dictionary codes for strings of one attribute of one site.
--
-- KEYS[1]  codes     hash: value -> code (codes start at 1, never change)
-- KEYS[2]  values    list: code - 1 -> value (its length is the last code given)
-- ARGV[1]  most      codes an attribute may have (max_dictionary_codes); past it every
--                    new value gets the code of ARGV[2], given once, after the others
-- ARGV[2]  other     the value that stands for all the values past the cap
-- ARGV[3..n]         the values to encode
-- Returns  {code of ARGV[3], ..., code of ARGV[n]}, assigning new codes in order.
--
-- Strings come from visitors (utm_source, country ...): without the cap anyone could
-- grow a site's dictionaries (and every process' copy of them) without end.

local most, other = tonumber(ARGV[1]), ARGV[2]
local out = {}
for i = 3, #ARGV do
  local code = redis.call('HGET', KEYS[1], ARGV[i])
  if not code then
    if redis.call('LLEN', KEYS[2]) < most then
      code = redis.call('RPUSH', KEYS[2], ARGV[i])
      redis.call('HSET', KEYS[1], ARGV[i], code)
    else
      code = redis.call('HGET', KEYS[1], other)
      if not code then
        code = redis.call('RPUSH', KEYS[2], other)
        redis.call('HSET', KEYS[1], other, code)
      end
    end
  end
  out[#out + 1] = tonumber(code)
end
return out
