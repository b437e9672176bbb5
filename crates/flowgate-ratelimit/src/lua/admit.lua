-- flowgate admission, one call per request. Checks requests (GCRA), tokens (GCRA in token
-- units) and concurrency (a sorted set of leases scored by expiry) for the tenant and the key,
-- and commits all of them only if every check passes. All times are integer microseconds, so
-- every value is exact in a Lua double.
--
-- KEYS: 1 tenant state hash, 2 tenant lease set, 3 key state hash, 4 key lease set.
-- ARGV: 1 now (empty: use the server's TIME), 2 lease id, 3 lease lifetime,
--       then per subject s = 0 (tenant), 1 (key), at 3 + 6*s:
--       +1 active ("1" or "0"), +2 request interval (0: no request limit),
--       +3 request tolerance (burst * interval), +4 token tolerance (window; 0: no token limit),
--       +5 token cost of this request (-1: above the capacity, never fits),
--       +6 max concurrent (0: no limit).
-- Returns: {admitted (1/0), rejected subject, rejected limit (1 requests, 2 tokens,
--           3 concurrency, 4 tokens never fit), retry after (-1: never),
--           then per subject: request time used, token time used, then now}.
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local lease = ARGV[2]
local lease_ttl = tonumber(ARGV[3])

local subjects = {}
local rejected_subject, rejected_limit, rejected_retry = -1, 0, 0

local function refuse(subject, limit, retry)
  if rejected_subject < 0 or (rejected_retry >= 0 and (retry < 0 or retry > rejected_retry)) then
    rejected_subject, rejected_limit, rejected_retry = subject, limit, retry
  end
end

for s = 0, 1 do
  local base = 3 + 6 * s
  if ARGV[base + 1] == '1' then
    local st = {
      hkey = KEYS[1 + 2 * s],
      zkey = KEYS[2 + 2 * s],
      rint = tonumber(ARGV[base + 2]),
      rtol = tonumber(ARGV[base + 3]),
      ttol = tonumber(ARGV[base + 4]),
      tcost = tonumber(ARGV[base + 5]),
      maxc = tonumber(ARGV[base + 6]),
    }
    st.rtat, st.ttat = now, now
    if st.rint > 0 or st.ttol > 0 then
      local stored = redis.call('HMGET', st.hkey, 'r', 't')
      st.rtat = math.max(tonumber(stored[1]) or 0, now)
      st.ttat = math.max(tonumber(stored[2]) or 0, now)
    end
    st.new_rtat, st.new_ttat = st.rtat, st.ttat
    if st.rint > 0 then
      local new = st.rtat + st.rint
      if new - now <= st.rtol then
        st.new_rtat = new
      else
        refuse(s, 1, new - now - st.rtol)
      end
    end
    if st.ttol > 0 then
      if st.tcost < 0 then
        refuse(s, 4, -1)
      else
        local new = st.ttat + st.tcost
        if new - now <= st.ttol then
          st.new_ttat = new
        else
          refuse(s, 2, new - now - st.ttol)
        end
      end
    end
    if st.maxc > 0 then
      redis.call('ZREMRANGEBYSCORE', st.zkey, '-inf', now)
      if redis.call('ZCARD', st.zkey) >= st.maxc then
        refuse(s, 3, 0)
      end
    end
    subjects[s] = st
  end
end

local reply = {0, rejected_subject, rejected_limit, rejected_retry, 0, 0, 0, 0, now}
if rejected_subject >= 0 then
  for s = 0, 1 do
    local st = subjects[s]
    if st then
      reply[5 + 2 * s] = st.rtat - now
      reply[6 + 2 * s] = st.ttat - now
    end
  end
  return reply
end

reply[1] = 1
for s = 0, 1 do
  local st = subjects[s]
  if st then
    local keep = math.max(st.new_rtat, st.new_ttat) - now
    if keep > 0 then
      redis.call('HSET', st.hkey, 'r', string.format('%.0f', st.new_rtat),
        't', string.format('%.0f', st.new_ttat))
      redis.call('PEXPIRE', st.hkey, math.ceil(keep / 1000) + 1000)
    end
    if st.maxc > 0 then
      redis.call('ZADD', st.zkey, string.format('%.0f', now + lease_ttl), lease)
      redis.call('PEXPIRE', st.zkey, math.ceil(lease_ttl / 1000) + 1000)
    end
    reply[5 + 2 * s] = st.new_rtat - now
    reply[6 + 2 * s] = st.new_ttat - now
  end
end
return reply
