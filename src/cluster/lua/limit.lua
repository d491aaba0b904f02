-- One request's limit work, atomic, on Redis's clock: the rate-limit cell (GCRA), the quota
-- points (per request, per local day, per dated window) and a concurrency lease.
--
-- KEYS: 1 rate bucket, 2 day points, 3 window points, 4 leases (a sorted set scored by
--       expiry in ms); a part not asked for is passed as its key anyway and not touched.
-- ARGV: 1 rate? (0/1)      2 burst          3 emission interval (µs)
--       4 cost             5 per request    6 per day        7 day key's TTL (s)
--       8 per window       9 window TTL (s) 10 max concurrent 11 lease (ms)
--       12 lease member    13 seeded? (0/1) 14 day used      15 window used
--       (limits: -1 is none)
-- Returns {0, rate remaining, rate reset (µs), day left, window left} when admitted (-1: no
-- such limit), {1, retry after (µs)} when the bucket is full (nothing taken), {2, which,
-- a, b} when a quota refuses (which: 1 per request {cost, limit}, 2 day {limit, used},
-- 3 window {limit, used}, 4 concurrency {limit, 0}; the rate cell stays taken, as on one
-- node), {3} when a day or window counter is unknown and must be seeded from the store
-- first (nothing taken).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)

local rate = ARGV[1] == '1'
local burst = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local per_request = tonumber(ARGV[5])
local per_day = tonumber(ARGV[6])
local day_ttl = tonumber(ARGV[7])
local per_window = tonumber(ARGV[8])
local window_ttl = tonumber(ARGV[9])
local max_conc = tonumber(ARGV[10])
local lease = tonumber(ARGV[11])

-- A counter Redis no longer holds (first request of the day, or Redis lost its data) is
-- started from the audit trail, once: the first seed wins, later ones change nothing.
if ARGV[13] == '1' then
  if per_day >= 0 then redis.call('SET', KEYS[2], ARGV[14], 'NX', 'EX', day_ttl) end
  if per_window >= 0 then redis.call('SET', KEYS[3], ARGV[15], 'NX', 'EX', window_ttl) end
elseif (per_day >= 0 and redis.call('EXISTS', KEYS[2]) == 0)
    or (per_window >= 0 and redis.call('EXISTS', KEYS[3]) == 0) then
  return {3}
end

local rate_remaining, rate_reset = -1, 0
if rate then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local horizon = burst * interval
  if new_tat - now > horizon then
    return {1, new_tat - now - horizon}
  end
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
  rate_remaining = math.floor((horizon - (new_tat - now)) / interval)
  rate_reset = new_tat - now
end

if per_request >= 0 and cost > per_request then
  return {2, 1, cost, per_request}
end
local day_used, window_used = 0, 0
if per_day >= 0 then
  day_used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if day_used + cost > per_day then return {2, 2, per_day, day_used} end
end
if per_window >= 0 then
  window_used = tonumber(redis.call('GET', KEYS[3]) or '0')
  if window_used + cost > per_window then return {2, 3, per_window, window_used} end
end
if max_conc >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now_ms)
  if redis.call('ZCARD', KEYS[4]) >= max_conc then return {2, 4, max_conc, 0} end
end

local day_left, window_left = -1, -1
if per_day >= 0 then
  redis.call('INCRBY', KEYS[2], cost)
  if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], day_ttl) end
  day_left = math.max(per_day - day_used - cost, 0)
end
if per_window >= 0 then
  redis.call('INCRBY', KEYS[3], cost)
  if redis.call('TTL', KEYS[3]) < 0 then redis.call('EXPIRE', KEYS[3], window_ttl) end
  window_left = math.max(per_window - window_used - cost, 0)
end
if max_conc >= 0 then
  redis.call('ZADD', KEYS[4], now_ms + lease, ARGV[12])
  redis.call('PEXPIRE', KEYS[4], lease * 2)
end
return {0, rate_remaining, rate_reset, day_left, window_left}
