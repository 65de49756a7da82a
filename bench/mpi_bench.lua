-- par.map across MPI ranks, run by bench/run.lua under mpirun:
--   mpirun -n RANKS build/parlua-mpi bench/mpi_bench.lua WORKERS SPIN
-- Rank 0 prints a JSON object: tiny_ms (10^6 tiny items), cpu_ms (200
-- items of SPIN loop turns each), map2_ms (one map of 2 items, median).
local workers, spin_n = tonumber(arg[1]), tonumber(arg[2])

local function spin(n)
  local s = 0
  for i = 1, n do s = (s + i * i) % 1000003 end
  return s
end

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

-- Milliseconds fn takes, timed the same on every rank (each starts together).
local function time_ms(fn)
  par.map(function(x) return x end, {1}) -- lines the ranks up
  local t0 = par.now()
  fn()
  return (par.now() - t0) * 1e3
end

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local tiny = range(1000000)
local cpu = range(200)
local out = {
  ranks = par.size(), workers = workers,
  tiny_ms = time_ms(function() par.map(function(x) return x end, tiny, {workers = workers}) end),
  cpu_ms = time_ms(function() par.map(function() return spin(spin_n) end, cpu, {workers = workers}) end),
}
local two = {}
for i = 1, 41 do
  two[i] = time_ms(function() par.map(function(x) return x end, {1, 2}, {workers = workers}) end)
end
out.map2_ms = median(two)
if par.is_root() then print(par.encode(out)) end
