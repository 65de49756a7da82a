-- A log file streamed through a two-stage parallel pipeline:
--   stage 1 parses lines into records;
--   stage 2 enriches each record with its user's plan (from a user directory
--   the workers get through the fork) and scores it against the plan's
--   latency target;
-- and the parent aggregates: requests and latency percentiles per level, and
-- the users whose requests ran longest past their target. The example writes
-- its own input first and checks the result against a plain loop.
--
-- Every item goes through the parent between stages (decoded, re-encoded),
-- so the parent's share of the work does not shrink with more workers:
-- here nearly half of what the plain loop takes. On two cores that and the
-- extra processes eat the whole gain (the pipeline takes about as long as
-- the plain loop, and longer when other work shares the machine); it pulls
-- ahead with more cores or with more work per line.
-- Run: build/parlua examples/pipeline.lua [lines]
local par = require "par"

local nlines = tonumber(arg and arg[1]) or 200000
local BLOCK = 2000   -- lines per pipeline item (see blocks_of_lines)
local path = os.tmpname()

local LEVELS = {"DEBUG", "INFO", "WARN", "ERROR"}
local PATHS = {"/api/items", "/api/search", "/api/cart", "/login", "/static/app.js"}
local TARGET = {80, 200, 120, 150, 30}        -- ms, per path, for the "pro" plan
local PLAN_PERCENT = {free = 150, pro = 100, enterprise = 75}   -- of TARGET
local NUSERS = 5000

local LEVEL_INDEX, PATH_INDEX = {}, {}
for i, level in ipairs(LEVELS) do LEVEL_INDEX[level] = i end
for i, p in ipairs(PATHS) do PATH_INDEX[p] = i end

-- The user directory: a table in the parent that every worker has, because
-- it exists before the pipeline forks. Nothing of it is ever sent.
local USERS = {}
for id = 0, NUSERS - 1 do
  USERS[id] = {plan = id % 10 < 6 and "free" or id % 10 < 9 and "pro" or "enterprise",
               region = ({"eu", "us", "ap"})[id % 3 + 1]}
end

-- A reproducible log, lines such as
-- 2024-05-01T08:00:00.051Z level=INFO user=u00042 latency_ms=37 path=/api/items
local function write_log()
  local f = assert(io.open(path, "w"))
  local seed, ms = 7, 8 * 3600 * 1000
  local function rand(n)   -- 0 .. n-1
    seed = (seed * 1103515245 + 12345) % 2147483648
    return (seed >> 8) % n
  end
  local out = {}
  for i = 1, nlines do
    ms = ms + rand(120)
    local r = rand(100)
    local level = r < 15 and "DEBUG" or r < 80 and "INFO" or r < 95 and "WARN" or "ERROR"
    local p = PATHS[rand(#PATHS) + 1]
    local latency = 5 + rand(60) + rand(60) + (level == "WARN" and rand(300) or 0)
                    + (level == "ERROR" and rand(1500) or 0)
    if rand(40) == 0 then latency = latency * 4 end        -- an occasional stall
    local user = rand(10) < 3 and rand(50) or rand(NUSERS)  -- a few busy users
    out[#out + 1] = ("2024-05-01T%02d:%02d:%02d.%03dZ level=%s user=u%05d latency_ms=%d path=%s\n")
      :format(ms // 3600000 % 24, ms // 60000 % 60, ms // 1000 % 60, ms % 1000,
              level, user, latency, p)
    if #out == 1000 or i == nlines then f:write(table.concat(out)); out = {} end
  end
  f:close()
end

-- One line -> time (ms of the day), level, user id, latency, path (the last
-- three as numbers); nothing for a line that does not parse.
local function parse_line(line)
  local h, m, s, frac, level, user, latency, p = line:match(
    "^2024%-05%-01T(%d%d):(%d%d):(%d%d)%.(%d%d%d)Z level=(%u+) user=u(%d+) latency_ms=(%d+) path=(%S+)$")
  if not h or not LEVEL_INDEX[level] or not PATH_INDEX[p] then return nil end
  return ((tonumber(h) * 60 + tonumber(m)) * 60 + tonumber(s)) * 1000 + tonumber(frac),
         LEVEL_INDEX[level], tonumber(user), tonumber(latency), PATH_INDEX[p]
end

-- A summary: requests, first and last time, hist[level][ms] = requests
-- (which gives exact percentiles and merges by adding), and pain[user] = ms
-- past the target, summed over the user's requests.
local function new_summary()
  local s = {requests = 0, first = math.maxinteger, last = -1, hist = {}, pain = {}}
  for i = 1, #LEVELS do s.hist[i] = {} end
  return s
end

-- Adds one record to a summary: the enrich-and-score step.
local function score(s, t, level, user, latency, p)
  s.requests = s.requests + 1
  if t < s.first then s.first = t end
  if t > s.last then s.last = t end
  local h = s.hist[level]
  h[latency] = (h[latency] or 0) + 1
  local target = TARGET[p] * PLAN_PERCENT[USERS[user].plan] // 100
  if latency > target then s.pain[user] = (s.pain[user] or 0) + (latency - target) end
end

-- The reducer, in the parent: adds summary b into a.
local function merge(a, b)
  a.requests = a.requests + b.requests
  a.first, a.last = math.min(a.first, b.first), math.max(a.last, b.last)
  for level, h in pairs(b.hist) do
    local into = a.hist[level]
    for ms, n in pairs(h) do into[ms] = (into[ms] or 0) + n end
  end
  for user, ms in pairs(b.pain) do a.pain[user] = (a.pain[user] or 0) + ms end
  return a
end

-- The source: the file, read lazily, BLOCK lines per item. Every item passes
-- through the parent between stages, at a cost of some microseconds each,
-- so one line per item would spend more time in the plumbing than in work.
local function blocks_of_lines()
  local lines, at_end = io.lines(path), false
  return function()
    local block = {}
    while not at_end and #block < BLOCK do
      local line = lines()
      if line then block[#block + 1] = line else at_end = true end   -- io.lines closes the file at its end
    end
    if #block > 0 then return block end
  end
end

-- Stage 1: a block of lines -> its records, as columns: five arrays of
-- numbers are much less to encode and decode than 2,000 small tables.
local function parse_block(lines)
  local t, level, user, latency, p = {}, {}, {}, {}, {}
  local n = 0
  for _, line in ipairs(lines) do
    local a, b, c, d, e = parse_line(line)
    if a then
      n = n + 1
      t[n], level[n], user[n], latency[n], p[n] = a, b, c, d, e
    end
  end
  return {t = t, level = level, user = user, latency = latency, path = p}
end

-- Stage 2: a block of records -> its summary.
local function score_block(r)
  local s = new_summary()
  for i = 1, #r.t do score(s, r.t[i], r.level[i], r.user[i], r.latency[i], r.path[i]) end
  return s
end

-- The same aggregate with a plain loop, one line at a time, for the check.
local function plain()
  local s = new_summary()
  for line in io.lines(path) do
    local t, level, user, latency, p = parse_line(line)
    if t then score(s, t, level, user, latency, p) end
  end
  return s
end

-- Percentile q of the latencies counted in h: the least ms that at least a
-- fraction q of the requests do not exceed.
local function percentile(h, q)
  local total, keys = 0, {}
  for ms, n in pairs(h) do total = total + n; keys[#keys + 1] = ms end
  table.sort(keys)
  local need, seen = math.ceil(q * total), 0
  for _, ms in ipairs(keys) do
    seen = seen + h[ms]
    if seen >= need then return ms end
  end
end

local function report(s)
  local function clock(ms) return ("%02d:%02d:%02d"):format(ms // 3600000, ms // 60000 % 60, ms // 1000 % 60) end
  print(("%d requests from %s to %s"):format(s.requests, clock(s.first), clock(s.last)))
  print("level      requests     p50     p90     p99     max   (latency, ms)")
  for i, level in ipairs(LEVELS) do
    local h, n = s.hist[i], 0
    for _, c in pairs(h) do n = n + c end
    if n > 0 then
      print(("%-8s %10d %7d %7d %7d %7d"):format(level, n, percentile(h, 0.5),
        percentile(h, 0.9), percentile(h, 0.99), percentile(h, 1.0)))
    end
  end
  local users = {}
  for user in pairs(s.pain) do users[#users + 1] = user end
  table.sort(users, function(a, b) return s.pain[a] > s.pain[b] or (s.pain[a] == s.pain[b] and a < b) end)
  print("most time past target:")
  for i = 1, math.min(5, #users) do
    local u = users[i]
    print(("  u%05d  %-10s %s  %8d ms"):format(u, USERS[u].plan, USERS[u].region, s.pain[u]))
  end
end

-- Two summaries agree when every count does.
local function same(a, b)
  if a.requests ~= b.requests or a.first ~= b.first or a.last ~= b.last then return false end
  local function same_counts(x, y)
    for k, v in pairs(x) do if y[k] ~= v then return false end end
    for k, v in pairs(y) do if x[k] ~= v then return false end end
    return true
  end
  for i = 1, #LEVELS do
    if not same_counts(a.hist[i], b.hist[i]) then return false end
  end
  return same_counts(a.pain, b.pain)
end

write_log()
local workers = par.workers()

local t0 = par.now()
local total = par.pipeline(blocks_of_lines())
  :map(parse_block, {workers = workers})
  :map(score_block, {workers = workers})
  :reduce(merge, new_summary())
local par_seconds = par.now() - t0

t0 = par.now()
local expected = plain()
local loop_seconds = par.now() - t0
os.remove(path)

report(total)
assert(total.requests == nlines, "lines lost on the way")
assert(same(total, expected), "the pipeline and the plain loop disagree")
print(("pipeline (%d + %d workers, %d lines an item): %.2f s"):format(workers, workers, BLOCK, par_seconds))
print(("plain loop: %.2f s, same result"):format(loop_seconds))
