-- Counts the primes below a limit by splitting the range into blocks and
-- sieving each block in a worker. Run: build/parlua examples/primes.lua [limit]
local par = require "par"

local limit = tonumber(arg and arg[1]) or 20000000
local block = 1000000

-- Primes up to sqrt(limit), found once in the parent; the workers see them
-- through the fork.
local function small_primes(n)
  local composite, primes = {}, {}
  for i = 2, n do
    if not composite[i] then
      primes[#primes + 1] = i
      for j = i * i, n, i do composite[j] = true end
    end
  end
  return primes
end
local base = small_primes(math.floor(math.sqrt(limit)) + 1)

-- Number of primes in [lo, hi).
local function count_block(lo)
  local hi = math.min(lo + block, limit)
  local composite = {}
  for _, p in ipairs(base) do
    if p * p >= hi then break end
    local start = math.max(p * p, (lo + p - 1) // p * p)
    for j = start, hi - 1, p do composite[j - lo] = true end
  end
  local count = 0
  for i = math.max(lo, 2), hi - 1 do
    if not composite[i - lo] then count = count + 1 end
  end
  return count
end

local starts = {}
for lo = 0, limit - 1, block do starts[#starts + 1] = lo end

local t0 = par.now()
local counts = par.map(count_block, starts)
local total = 0
for _, c in ipairs(counts) do total = total + c end
print(("primes below %d: %d (%d blocks, %d workers, %.2f s)")
  :format(limit, total, #starts, par.workers(), par.now() - t0))
