-- sliding window: mirrors limiter_core.sliding_window line for line; time from the Redis server.
-- Numbers are stored and returned with 17 significant digits: with tostring's 14, a short
-- window's start read back as another number, and the window never counted its requests.
local function num(x) return string.format('%.17g', x) end
local now = ARGV[5] and tonumber(ARGV[5])  -- the store's clock, when it has one (tests)
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local limit, period, cost, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local start = math.floor(now / period) * period
local state = redis.call('HMGET', KEYS[1], 'start', 'current', 'previous')
local current, previous = 0, 0
if state[1] then
  local old = tonumber(state[1])
  if old == start then
    current, previous = tonumber(state[2]), tonumber(state[3])
  elseif old > start - 2 * period then
    previous = tonumber(state[2])
  end
end
local elapsed = now - start
local estimate = previous * (1 - elapsed / period) + current
local allowed, retry = 0, 0
if estimate + cost <= limit then
  allowed = 1
  current = current + cost
  estimate = estimate + cost
else
  local room = limit - cost - current
  if previous > 0 and room >= 0 then
    retry = math.max(0, period * (1 - room / previous) - elapsed)
  else
    local next_room = limit - cost
    if current == 0 or next_room >= current then
      retry = period - elapsed
    else
      retry = period - elapsed + period * (1 - next_room / current)
    end
  end
end
redis.call('HSET', KEYS[1], 'start', num(start), 'current', num(current), 'previous', num(previous))
redis.call('PEXPIRE', KEYS[1], ttl)
local remaining = math.max(0, math.floor(limit - estimate))
return {allowed, num(remaining), num(period - elapsed), num(retry)}
