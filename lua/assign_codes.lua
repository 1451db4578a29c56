-- assign_codes: dictionary codes for strings of one attribute of one site.
--
-- KEYS[1]  codes     hash: value -> code (codes start at 1, never change)
-- KEYS[2]  values    list: code - 1 -> value (its length is the last code given)
-- ARGV[1..n]         the values to encode
-- Returns  {code of ARGV[1], ..., code of ARGV[n]}, assigning new codes in order.

local out = {}
for i = 1, #ARGV do
  local code = redis.call('HGET', KEYS[1], ARGV[i])
  if not code then
    code = redis.call('RPUSH', KEYS[2], ARGV[i])
    redis.call('HSET', KEYS[1], ARGV[i], code)
  end
  out[i] = tonumber(code)
end
return out
