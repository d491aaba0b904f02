-- Renews the leases a node holds for requests still running, so they outlive the lease
-- only while the node is alive to renew them.
--
-- KEYS: the lease sets, one per lease.  ARGV: 1 lease (ms), then one member per key.
-- A lease already gone (expired while Redis was away) is not brought back.
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local renewed = 0
for i, key in ipairs(KEYS) do
  renewed = renewed + redis.call('ZADD', key, 'XX', 'CH', until_ms, ARGV[i + 1])
  redis.call('PEXPIRE', key, tonumber(ARGV[1]) * 2)
end
return renewed
