-- sliding log: mirrors limiter_core.sliding_log line for line; time from the Redis server.
-- Scores go to Redis as numbers (exact); results come back with 17 significant digits.
local function num(x) return string.format('%.17g', x) end
local now = ARGV[5] and tonumber(ARGV[5])  -- the store's clock, when it has one (tests)
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local limit, period, cost, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local count = redis.call('ZCARD', KEYS[1])
local allowed, retry = 0, 0
if count + cost <= limit then
  allowed = 1
  for i = 1, cost do
    local seq = redis.call('INCR', KEYS[2])
    redis.call('ZADD', KEYS[1], now, num(now) .. ':' .. seq)
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
return {allowed, num(math.max(0, limit - count)), num(reset), num(math.max(0, retry))}
