-- flowgate settlement or release, one call per finished request. Frees the concurrency lease
-- and moves the token TAT by the difference between reserved and reported tokens (positive:
-- charge, negative: refund, never fuller than full). Integer microseconds, as in admit.lua.
--
-- KEYS: 1 tenant state hash, 2 tenant lease set, 3 key state hash, 4 key lease set.
-- ARGV: 1 the admission's time (settlement is booked as if the actual amount had been
--       reserved then), 2 lease id,
--       then per subject s at 2 + 2*s: +1 active ("1" or "0"), +2 token time delta.
-- Returns 1.
local now = tonumber(ARGV[1])
local lease = ARGV[2]

for s = 0, 1 do
  local base = 2 + 2 * s
  if ARGV[base + 1] == '1' then
    local hkey = KEYS[1 + 2 * s]
    redis.call('ZREM', KEYS[2 + 2 * s], lease)
    local delta = tonumber(ARGV[base + 2])
    if delta ~= 0 then
      local stored = redis.call('HMGET', hkey, 'r', 't')
      local rtat = math.max(tonumber(stored[1]) or 0, now)
      local ttat = math.max(tonumber(stored[2]) or 0, now)
      if delta > 0 then
        ttat = ttat + delta
      else
        ttat = math.max(ttat + delta, now)
      end
      local keep = math.max(rtat, ttat) - now
      if keep > 0 then
        redis.call('HSET', hkey, 'r', string.format('%.0f', rtat), 't', string.format('%.0f', ttat))
        redis.call('PEXPIRE', hkey, math.ceil(keep / 1000) + 1000)
      else
        redis.call('DEL', hkey)
      end
    end
  end
end
return 1
