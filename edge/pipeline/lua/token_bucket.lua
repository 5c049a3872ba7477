-- token bucket: mirrors limiter_core.token_bucket line for line; time from the Redis server.
-- Numbers are stored and returned with 17 significant digits (tostring keeps 14, which
-- moves today's Unix time by up to 50 us: a burst then found its bucket short of a token).
local function num(x) return string.format('%.17g', x) end
local now = ARGV[5] and tonumber(ARGV[5])  -- the store's clock, when it has one (tests)
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local capacity, rate, cost, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = capacity
if state[1] then
  tokens = math.min(capacity, tonumber(state[1]) + (now - tonumber(state[2])) * rate)
end
if tokens < 0 then tokens = 0 end
local allowed, retry = 0, 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', num(tokens), 'updated', num(now))
redis.call('PEXPIRE', KEYS[1], ttl)
return {allowed, num(math.floor(tokens)), num((capacity - tokens) / rate), num(retry)}
