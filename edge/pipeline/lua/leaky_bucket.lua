-- leaky bucket: mirrors limiter_core.leaky_bucket line for line; time from the Redis server.
-- Numbers are stored and returned with 17 significant digits (tostring keeps 14, which
-- moves a theoretical arrival time near today's Unix time by up to 50 us).
local function num(x) return string.format('%.17g', x) end
local now = ARGV[7] and tonumber(ARGV[7])  -- the store's clock, when it has one (tests)
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local rate, capacity, cost, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local queue, max_delay = ARGV[5] == 'queue', tonumber(ARGV[6])
local interval = 1 / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local tolerance = interval * capacity
if queue then
  local delay = tat - now
  if delay > max_delay then
    return {0, '0', num(tat - now), num(delay - max_delay), '0'}
  end
  redis.call('SET', KEYS[1], num(new_tat), 'PX', ttl)
  local remaining = math.max(0, math.floor((max_delay - (new_tat - now)) / interval))
  return {1, num(remaining), num(new_tat - now), '0', num(delay)}
end
if new_tat - now > tolerance then
  local remaining = math.max(0, math.floor((tolerance - (tat - now)) / interval))
  return {0, num(remaining), num(tat - now), num(new_tat - now - tolerance), '0'}
end
redis.call('SET', KEYS[1], num(new_tat), 'PX', ttl)
local remaining = math.max(0, math.floor((tolerance - (new_tat - now)) / interval))
return {1, num(remaining), num(new_tat - now), '0', '0'}
