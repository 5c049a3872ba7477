-- leaky bucket: mirrors limiter_core.leaky_bucket line for line; time from the Redis server.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
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
    return {0, '0', tostring(tat - now), tostring(delay - max_delay), '0'}
  end
  redis.call('SET', KEYS[1], tostring(new_tat), 'PX', ttl)
  local remaining = math.max(0, math.floor((max_delay - (new_tat - now)) / interval))
  return {1, tostring(remaining), tostring(new_tat - now), '0', tostring(delay)}
end
if new_tat - now > tolerance then
  local remaining = math.max(0, math.floor((tolerance - (tat - now)) / interval))
  return {0, tostring(remaining), tostring(tat - now), tostring(new_tat - now - tolerance), '0'}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', ttl)
local remaining = math.max(0, math.floor((tolerance - (new_tat - now)) / interval))
return {1, tostring(remaining), tostring(new_tat - now), '0', '0'}
