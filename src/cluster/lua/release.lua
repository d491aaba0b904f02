-- The end of an admitted request: its rate cell and quota points given back or settled,
-- its concurrency lease ended.
--
-- KEYS: 1 rate bucket, 2 day points, 3 window points, 4 leases.
-- ARGV: 1 give the rate cell back? (0/1)  2 emission interval (µs)
--       3 points to add to the day (negative: given back)  4 the same for the window
--       5 lease member ('' : none)
-- A counter that expired meanwhile is not recreated: its window is over.
if ARGV[1] == '1' then
  local tat = redis.call('GET', KEYS[1])
  if tat then
    redis.call('SET', KEYS[1], string.format('%.0f', tonumber(tat) - tonumber(ARGV[2])), 'KEEPTTL')
  end
end
local day, window = tonumber(ARGV[3]), tonumber(ARGV[4])
if day ~= 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  local v = redis.call('INCRBY', KEYS[2], day)
  if v < 0 then redis.call('SET', KEYS[2], 0, 'KEEPTTL') end
end
if window ~= 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  local v = redis.call('INCRBY', KEYS[3], window)
  if v < 0 then redis.call('SET', KEYS[3], 0, 'KEEPTTL') end
end
if ARGV[5] ~= '' then
  redis.call('ZREM', KEYS[4], ARGV[5])
end
return 0
