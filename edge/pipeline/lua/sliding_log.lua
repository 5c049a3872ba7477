-- sliding log: mirrors limiter_core.sliding_log line for line; time from the Redis server.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit, period, cost, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local count = redis.call('ZCARD', KEYS[1])
local allowed, retry = 0, 0
if count + cost <= limit then
  allowed = 1
  for i = 1, cost do
    local seq = redis.call('INCR', KEYS[2])
    redis.call('ZADD', KEYS[1], now, tostring(now) .. ':' .. seq)
  end
  redis.call('PEXPIRE', KEYS[2], ttl)
  count = count + cost
else
  local index = count + cost - limit - 1
  local entry = redis.call('ZRANGE', KEYS[1], index, index, 'WITHSCORES')
  if entry[2] then retry = tonumber(entry[2]) + period - now else retry = period end
end
redis.call('PEXPIRE', KEYS[1], ttl)
local reset = 0
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then reset = tonumber(oldest[2]) + period - now end
return {allowed, tostring(math.max(0, limit - count)), tostring(reset), tostring(math.max(0, retry))}
