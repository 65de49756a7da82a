-- bench/run.lua: what `make bench` runs (build/parlua bench/run.lua).
-- Times par.map next to a plain Lua loop and next to Python's
-- multiprocessing.Pool (bench/pool_bench.py) on this machine, then prints
-- one table with the ratios and whether each goal was met; then a second
-- table with the per-item cost of par.queue and par.imap next to
-- ProcessPoolExecutor.submit + as_completed and Pool.imap_unordered.
-- See bench/README.md for what each workload measures.

local HERE = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local WORKERS = par.workers()
local CPU_TARGET_MS = 4     -- one CPU-bound item aims at this many ms
local BIG_LEN = 2000000     -- integers in each result of the "big" workload
local QUEUE_ITEMS = 50000   -- items pushed through par.queue and par.imap
local SUBMIT_ITEMS = 10000  -- items for ProcessPoolExecutor.submit (slow per item)
local UNORDERED_ITEMS = 20000 -- items for Pool.imap_unordered
local QUEUE_GOAL = 10       -- par.queue vs ProcessPoolExecutor, per item

---------------------------------------------------------------------------
-- small helpers

local function progress(fmt, ...)
  io.stderr:write(fmt:format(...), "\n")
end

local function median(xs)
  table.sort(xs)
  local n = #xs
  if n % 2 == 1 then return xs[(n + 1) // 2] end
  return (xs[n // 2] + xs[n // 2 + 1]) / 2
end

-- Runs fn once and returns the elapsed milliseconds (and fn's result).
local function time_ms(fn)
  collectgarbage("collect")
  local start = par.now()
  local result = fn()
  return (par.now() - start) * 1000, result
end

-- The median of 'reps' timings of fn, and the result of the last run.
local function median_ms(fn, reps)
  local times, result = {}, nil
  for i = 1, reps do
    times[i], result = time_ms(fn)
  end
  return median(times), result
end

local function range(n)
  local xs = {}
  for i = 1, n do xs[i] = i end
  return xs
end

local function plain_map(fn, xs)
  local out = {}
  for i = 1, #xs do out[i] = fn(xs[i]) end
  return out
end

-- True when two values look alike; lists are compared by length and their
-- first and last elements, which is enough to catch a broken run.
local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  return #a == #b and same(a[1], b[1]) and same(a[#a], b[#b])
end

-- Warns (without stopping) when par.map's result is not what the plain loop gives.
local function check(name, got, want)
  if not same(got, want) then
    progress("WARNING: %s: par.map gave a different result than the plain loop", name)
  end
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- First line of a command's output, or nil.
local function command_line(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  if not p then return nil end
  local line = p:read("l")
  p:close()
  return line
end

local function cpu_model()
  local f = io.open("/proc/cpuinfo", "r")
  if not f then return "unknown" end
  for line in f:lines() do
    local model = line:match("^model name%s*:%s*(.-)%s*$")
    if model then f:close() return model end
  end
  f:close()
  return "unknown"
end

---------------------------------------------------------------------------
-- Python's side: bench/pool_bench.py prints one JSON object per workload.

local function python_bench(workload, reps, size)
  local cmd = ("python3 %s %s --workers %d --reps %d"):format(
    shell_quote(HERE .. "/pool_bench.py"), workload, WORKERS, reps)
  if size then cmd = cmd .. " --size " .. size end
  local p = io.popen(cmd, "r")
  if not p then return nil end
  local out = p:read("a")
  local ok = p:close()
  if not ok or out == "" then
    progress("  python3 failed for %s (is python3 on PATH?)", workload)
    return nil
  end
  local decoded_ok, result = pcall(par.decode, out)
  if not decoded_ok or type(result) ~= "table" then
    progress("  cannot read pool_bench.py output for %s: %s", workload, out)
    return nil
  end
  return result
end

---------------------------------------------------------------------------
-- the functions the workers run

local function trivial(x) return x end

local function double(x) return x * 2 end

-- The CPU-bound item: the same integer loop as spin() in pool_bench.py.
local function spin(n)
  local s = 0
  for i = 1, n do s = (s + i * i) % 1000003 end
  return s
end

local function big_list(k)
  local t = {}
  for i = 1, BIG_LEN do t[i] = k + i end
  return t
end

-- The loop count that makes one spin() call take about CPU_TARGET_MS.
local function calibrate_spin()
  local probe = 500000
  local ms = median_ms(function() return spin(probe) end, 5)
  return math.max(1, math.floor(probe * CPU_TARGET_MS / math.max(ms, 1e-6)))
end

---------------------------------------------------------------------------
-- workloads: each returns a row for the table

-- Fills in the Python columns of a row.
local function add_python(row, py)
  if py then
    row.py_loop_ms = py.loop_ms
    row.pool_ms = py.pool_ms
    row.py_notes = py.notes
  end
  return row
end

local function bench_startup()
  local reps = 21
  local items = {1, 2}
  local lua_ms = median_ms(function() return plain_map(trivial, items) end, reps)
  local par_ms, got = median_ms(function() return par.map(trivial, items) end, reps)
  check("startup", got, items)
  return add_python({
    name = "startup: 2 items, pool included", lua_ms = lua_ms, par_ms = par_ms,
    goal = 20, goal_of = "pool",
  }, python_bench("startup", 11))
end

local function bench_tiny()
  local reps, n = 5, 1000000
  local xs = range(n)
  local lua_ms, want = median_ms(function() return plain_map(double, xs) end, reps)
  local par_ms, got = median_ms(function() return par.map(double, xs) end, reps)
  check("tiny", got, want)
  return add_python({
    name = "1M tiny items (x*2)", lua_ms = lua_ms, par_ms = par_ms,
    goal = 5, goal_of = "pool",
  }, python_bench("tiny", reps, n))
end

local function bench_chunk1()
  local reps, n = 5, 20000
  local xs = range(n)
  local lua_ms, want = median_ms(function() return plain_map(double, xs) end, reps)
  local par_ms, got = median_ms(function() return par.map(double, xs, {chunk = 1}) end, reps)
  check("chunk1", got, want)
  return add_python({
    name = "20k tiny items, chunk=1", lua_ms = lua_ms, par_ms = par_ms,
    goal = 5, goal_of = "pool",
  }, python_bench("chunk1", reps, n))
end

local function bench_cpu()
  local reps, n = 5, 200
  local loops = calibrate_spin()
  local xs = {}
  for i = 1, n do xs[i] = loops end
  local lua_ms, want = median_ms(function() return plain_map(spin, xs) end, reps)
  local par_ms, got = median_ms(function() return par.map(spin, xs) end, reps)
  check("cpu", got, want)
  return add_python({
    name = ("200 CPU items (~%d ms each)"):format(CPU_TARGET_MS),
    lua_ms = lua_ms, par_ms = par_ms,
    goal = 1.85, goal_of = "lua", loops = loops, items = n,
  }, python_bench("cpu", reps, n))
end

local function bench_big()
  local reps = 5
  local ks = {0, 1}
  local lua_ms, want = median_ms(function() return plain_map(big_list, ks) end, reps)
  local par_ms, got = median_ms(function() return par.map(big_list, ks) end, reps)
  check("big", got, want)
  return add_python({
    name = "2 results of 2M ints each", lua_ms = lua_ms, par_ms = par_ms,
    goal = 3, goal_of = "pool",
  }, python_bench("big", reps))
end

---------------------------------------------------------------------------
-- floors: lower bounds for par.map on the tiny and big workloads here.
-- The workers must make the Lua calls (and build the big lists), and the
-- results must cross as JSON text; each floor adds up that work, timed
-- alone in this process, and spreads it over the cores with no overhead
-- at all: no fork, no pipe, no scheduling.

local function floor_tiny()
  local n = 1000000
  local xs = range(n)
  local call_ms = median_ms(function() for i = 1, n do double(xs[i]) end end, 5)
  local text = par.encode(plain_map(double, xs))
  local decode_ms = median_ms(function() return par.decode(text) end, 5)
  return {
    lists = 1,
    terms = {{"calls", call_ms}, {"decoding the results", decode_ms}},
  }
end

-- Each of two workers builds and encodes one list; the parent decodes both.
local function floor_big()
  local build_ms, list = median_ms(function() return big_list(0) end, 3)
  local encode_ms, text = median_ms(function() return par.encode(list) end, 3)
  local decode_ms = median_ms(function() return par.decode(text) end, 3)
  return {
    lists = 2,
    terms = {{"build", build_ms}, {"encode", encode_ms}, {"decode", decode_ms}},
  }
end

---------------------------------------------------------------------------
-- streaming: per-item cost of par.queue and par.imap (microseconds per item)

-- Warns when a streaming run did not give back every item's x*2 once.
local function check_stream(name, count, sum, n)
  if count ~= n or sum ~= n * (n + 1) then
    progress("WARNING: %s: got %d results summing to %s, want %d summing to %d",
             name, count, tostring(sum), n, n * (n + 1))
  end
end

-- One run of the queue workload on a queue made (and warmed up) beforehand:
-- push 1..n, popping one result whenever the queue holds 'capacity' items,
-- then close and drain. Returns the number of results and their sum.
local function queue_run(q, n)
  local cap = q:capacity()
  local count, sum = 0, 0
  for i = 1, n do
    q:push(i)
    if q:pending() >= cap then
      local _, r = q:pop()
      count, sum = count + 1, sum + r
    end
  end
  q:close()
  for _, r in q:results() do count, sum = count + 1, sum + r end
  return count, sum
end

-- Median ms of queue_run over 'reps' fresh queues. Making the queue (which
-- forks its workers) and a first push+pop happen before the clock starts,
-- as Python's pools are made and warmed up outside their timing.
local function bench_queue_ms(n, reps)
  local times = {}
  for k = 1, reps do
    collectgarbage("collect")
    local q = par.queue(double)
    q:push(0)
    q:pop()
    local start = par.now()
    local count, sum = queue_run(q, n)
    times[k] = (par.now() - start) * 1000
    check_stream("par.queue", count, sum, n)
  end
  return median(times)
end

-- par.imap over an iterator source of 1..n; the workers are forked inside
-- the timed part (par.imap makes its queue when called).
local function imap_run(n)
  local i = 0
  local function source()
    if i < n then i = i + 1 return i end
  end
  local count, sum = 0, 0
  for _, r in par.imap(double, source) do count, sum = count + 1, sum + r end
  return count, sum
end

local function bench_imap_ms(n, reps)
  local times = {}
  for k = 1, reps do
    local ms, counts = time_ms(function() return {imap_run(n)} end)
    times[k] = ms
    check_stream("par.imap", counts[1], counts[2], n)
  end
  return median(times)
end

-- Microseconds per item from a pool_bench.py result, or nil.
local function python_us(py)
  if not py or not py.pool_ms or not py.notes or not py.notes.items then return nil end
  if py.notes.ok == false then
    progress("WARNING: %s: Python's results were not every item's x*2", py.workload)
  end
  return py.pool_ms * 1000 / py.notes.items
end

-- Returns the streaming rows: par.queue (with the goal) and par.imap.
local function bench_streaming()
  local reps = 5
  local queue_us = bench_queue_ms(QUEUE_ITEMS, reps) * 1000 / QUEUE_ITEMS
  local imap_us = bench_imap_ms(QUEUE_ITEMS, reps) * 1000 / QUEUE_ITEMS
  local submit_us = python_us(python_bench("submit", reps, SUBMIT_ITEMS))
  local unordered_us = python_us(python_bench("imap_unordered", reps, UNORDERED_ITEMS))
  return {
    {name = "queue push+pop, tiny items (us/item)", par_us = queue_us,
     submit_us = submit_us, unordered_us = unordered_us, goal = QUEUE_GOAL},
    {name = "par.imap, iterator source (us/item)", par_us = imap_us,
     submit_us = submit_us, unordered_us = unordered_us},
  }
end

-- Rows {name=, par_ms=, cjson_ms=} from bench/codec_bench.lua, or nil and why.
local function codec_rows()
  local chunk, err = loadfile(HERE .. "/codec_bench.lua")
  if not chunk then return nil, err end
  local ok, value = pcall(chunk)
  if not ok then return nil, value end
  if type(value) == "table" and type(value.run) == "function" then value = value.run end
  if type(value) == "function" then
    ok, value = pcall(value)
    if not ok then return nil, value end
  end
  if type(value) ~= "table" then return nil, "codec_bench.lua returned no rows" end
  return value
end

---------------------------------------------------------------------------
-- printing

local function fmt_ms(ms)
  if ms == nil then return "n/a" end
  if ms >= 100 then return ("%.0f ms"):format(ms) end
  if ms >= 10 then return ("%.1f ms"):format(ms) end
  if ms >= 0.1 then return ("%.2f ms"):format(ms) end
  return ("%.4f ms"):format(ms)
end

local function fmt_us(us)
  if us == nil then return "n/a" end
  if us >= 100 then return ("%.0f us"):format(us) end
  if us >= 10 then return ("%.1f us"):format(us) end
  return ("%.2f us"):format(us)
end

local function fmt_count(n)
  if n == nil then return "n/a" end
  return ("%.0f"):format(n)
end

local function fmt_ratio(r)
  if r == nil then return "n/a" end
  if r >= 10 then return ("%.1fx"):format(r) end
  return ("%.2fx"):format(r)
end

local function ratio(slow, fast)
  if slow == nil or fast == nil or fast <= 0 then return nil end
  return slow / fast
end

-- The ratio a row's goal is judged on: par vs Pool, or par vs the plain Lua loop.
local function goal_ratio(row)
  if row.goal_of == "lua" then return ratio(row.lua_ms, row.par_ms) end
  return ratio(row.pool_ms, row.par_ms)
end

local function goal_text(row)
  if row.goal_of == "lua" then return ("%sx vs Lua"):format(row.goal) end
  return ("%sx vs Pool"):format(row.goal)
end

local function met_text(row)
  local r = goal_ratio(row)
  if r == nil then return "n/a" end
  return r >= row.goal and "met" or "NOT met"
end

-- Prints rows of strings as a table; the first row is the header.
local function print_table(lines)
  local widths = {}
  for _, cells in ipairs(lines) do
    for i, cell in ipairs(cells) do
      widths[i] = math.max(widths[i] or 0, #cell)
    end
  end
  for n, cells in ipairs(lines) do
    local out = {}
    for i, cell in ipairs(cells) do
      local pad = (" "):rep(widths[i] - #cell)
      out[i] = i == 1 and cell .. pad or pad .. cell
    end
    print("| " .. table.concat(out, " | ") .. " |")
    if n == 1 then
      local rule = {}
      for i = 1, #widths do rule[i] = ("-"):rep(widths[i]) end
      print("|-" .. table.concat(rule, "-|-") .. "-|")
    end
  end
end

local function print_header()
  print("parlua benchmark (make bench)")
  print("date:    " .. os.date("%Y-%m-%d %H:%M:%S %z"))
  print("system:  " .. (command_line("uname -srm") or "unknown"))
  print("cpu:     " .. cpu_model())
  print("workers: " .. WORKERS .. " (par.workers(); Pool uses the same count)")
  print("lua:     " .. _VERSION .. ", " .. tostring(par.version))
  print("python:  " .. (command_line("python3 --version 2>&1") or "not found"))
  print("times are medians of several repetitions; see bench/README.md")
  print()
end

local function print_results(rows)
  local lines = {{"workload", "plain Lua", "par", "Python loop", "Pool",
                  "par vs Pool", "goal", "met"}}
  for _, row in ipairs(rows) do
    -- the CPU-bound items differ between the languages: no par vs Pool there
    local vs_pool = row.goal_of == "lua" and "-" or fmt_ratio(ratio(row.pool_ms, row.par_ms))
    lines[#lines + 1] = {
      row.name, fmt_ms(row.lua_ms), fmt_ms(row.par_ms), fmt_ms(row.py_loop_ms),
      fmt_ms(row.pool_ms), vs_pool, goal_text(row), met_text(row),
    }
  end
  print_table(lines)
end

local function print_speedups(row)
  print()
  print(("CPU-bound speed-up with %d workers: par over plain Lua %s, Pool over Python loop %s")
    :format(WORKERS, fmt_ratio(ratio(row.lua_ms, row.par_ms)),
            fmt_ratio(ratio(row.py_loop_ms, row.pool_ms))))
  local py = row.py_notes
  print(("  (Lua: loop count %s, %s/item; Python: loop count %s, %s/item)"):format(
    fmt_count(row.loops), fmt_ms(row.lua_ms / row.items),
    fmt_count(py and py.loop_count), fmt_ms(py and py.item_ms)))
end

local function print_goals(rows)
  print()
  for _, row in ipairs(rows) do
    local than = row.goal_of == "lua" and "the plain Lua loop" or "Pool"
    print(("goal %sx (%s, par vs %s): %s (got %s)"):format(
      row.goal, row.name, than, met_text(row), fmt_ratio(goal_ratio(row))))
  end
end

local function print_streaming(rows)
  print()
  print(("streaming: per-item cost of tiny items (x*2), %d workers; par %d items, "
         .. "ProcessPoolExecutor %d, Pool.imap_unordered %d"):format(
         WORKERS, QUEUE_ITEMS, SUBMIT_ITEMS, UNORDERED_ITEMS))
  local lines = {{"workload", "par", "ProcessPoolExecutor", "Pool.imap_unordered",
                  "par vs PPE", "par vs imap_unordered", "goal", "met"}}
  for _, row in ipairs(rows) do
    local r = ratio(row.submit_us, row.par_us)
    local met = "-"
    if row.goal then met = r == nil and "n/a" or (r >= row.goal and "met" or "NOT met") end
    lines[#lines + 1] = {
      row.name, fmt_us(row.par_us), fmt_us(row.submit_us), fmt_us(row.unordered_us),
      fmt_ratio(r), fmt_ratio(ratio(row.unordered_us, row.par_us)),
      row.goal and ("%sx vs PPE"):format(row.goal) or "-", met,
    }
  end
  print_table(lines)
  print("(PPE = ProcessPoolExecutor.submit + as_completed; ratios above 1x mean par is faster)")
  print()
  local q, im = rows[1], rows[2]
  local r = ratio(q.submit_us, q.par_us)
  print(("goal %sx vs ProcessPoolExecutor.submit+as_completed: %s (got %s)"):format(
    q.goal, r == nil and "n/a" or (r >= q.goal and "met" or "NOT met"), fmt_ratio(r)))
  print(("context: par.queue vs Pool.imap_unordered (chunksize=1): %s; "
         .. "par.imap vs Pool.imap_unordered: %s"):format(
    fmt_ratio(ratio(q.unordered_us, q.par_us)), fmt_ratio(ratio(im.unordered_us, im.par_us))))
end

-- "2 x (build 23 ms + encode 57 ms + decode 31 ms) / 2 cores = 112 ms"
local function floor_text(f)
  local total, texts = 0, {}
  for k, term in ipairs(f.terms) do
    total = total + term[2]
    texts[k] = term[1] .. " " .. fmt_ms(term[2])
  end
  local sum = "(" .. table.concat(texts, " + ") .. ")"
  if f.lists > 1 then sum = f.lists .. " x " .. sum end
  return ("%s / %d cores = %s"):format(sum, WORKERS, fmt_ms(f.lists * total / WORKERS))
end

local function print_floors(rows)
  print()
  print("floors: the least par.map could take here, with no overhead at all (see bench/README.md, \"Floors\")")
  for _, row in ipairs(rows) do
    if row.floor then
      local need = row.pool_ms and fmt_ms(row.pool_ms / row.goal) or "n/a"
      print(("  %s: %s; the %sx goal needs par at %s; par took %s"):format(
        row.name, floor_text(row.floor), row.goal, need, fmt_ms(row.par_ms)))
    end
  end
end

local function print_codec(rows, err)
  print()
  print("codec: par.encode/par.decode vs cjson (bench/codec_bench.lua, best of its runs, CPU time)")
  if not rows then
    print("  not run: " .. tostring(err))
    return
  end
  local lines = {{"case", "par", "cjson", "par vs cjson"}}
  for _, row in ipairs(rows) do
    lines[#lines + 1] = {tostring(row.name), fmt_ms(row.par_ms), fmt_ms(row.cjson_ms),
                         fmt_ratio(ratio(row.cjson_ms, row.par_ms))}
  end
  print_table(lines)
  print("(par vs cjson above 1x means par is faster)")
end

---------------------------------------------------------------------------
-- side by side: each bench/<name>_bench.lua prints "key<TAB>microseconds"
-- lines, its bench/<name>_bench.py twin prints one JSON object {key: us}

-- par.map across MPI ranks (bench/mpi_bench.lua): 1 rank of 2 workers
-- against 2 ranks of 1 worker, the same two cores; nil without Open MPI.
local function mpi_rows()
  if not (io.open("build/parlua-mpi") and os.execute("command -v mpirun >/dev/null 2>&1")) then return nil end
  local spin_n = calibrate_spin()
  local function run(ranks, workers)
    local p = io.popen(("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --bind-to none --oversubscribe -n %d " ..
      "build/parlua-mpi bench/mpi_bench.lua %d %d"):format(ranks, workers, spin_n))
    local text = p:read("a")
    p:close()
    local ok, row = pcall(par.decode, text)
    return ok and row or nil
  end
  local one, two = run(1, 2), run(2, 1)
  if not (one and two) then return nil end
  return {one = one, two = two}
end

local function print_mpi(m)
  if m == nil then
    print("\nMPI: skipped (no build/parlua-mpi or mpirun)")
    return
  end
  print("\npar.map across MPI ranks: 1 rank x 2 workers vs 2 ranks x 1 worker (same 2 cores)")
  print(("  %-34s %10s %10s %8s"):format("workload", "1x2 ms", "2x1 ms", "ratio"))
  for _, w in ipairs({{"tiny_ms", "10^6 tiny items"}, {"cpu_ms", "200 CPU items (goal: ratio <= 1.10)"},
                      {"map2_ms", "one map of 2 items (goal: 2x1 < 1 ms)"}}) do
    local a, b = m.one[w[1]], m.two[w[1]]
    print(("  %-34s %10.1f %10.1f %8.2f"):format(w[2], a, b, b / a))
  end
end

local SIDE_BY_SIDE = {
  {title = "shared state: per operation, measured inside a worker, vs Python's multiprocessing",
   name = "sync", rows = {
     {"value_add_2workers", "2 workers, v:add 10^5 each (Value + get_lock)", 10},
     {"lock_uncontended", "lock acquire + release, uncontended, 2*10^5 (Lock)", 2},
   }},
  {title = "shared dict: per operation, measured inside a worker, vs Python's Manager().dict()",
   name = "dict", rows = {
     {"dict_set_get", "dict set / get, 2*10^4 integer keys (Manager().dict())", 100},
     {"dict_incr_2workers", "2 workers, d:incr on one key, 5000 each (Manager dict + Lock)", 200},
   }},
  {title = "pipes and channels: per message, vs Python's Pipe and Queue",
   name = "pipe", rows = {
     {"pipe_ping_pong", "duplex pipe ping-pong, small ints, 2*10^4 (Pipe)", 3},
     {"channel_put_get", "channel put (parent) / get (worker), 10^5 small ints (Queue)", 5},
   }},
  {title = "warm pool: per call, task or item, 2 workers, vs Python's reused Pool and ProcessPoolExecutor",
   name = "pool_futures", rows = {
     {"warm_map_2", "pool:map of 2 tiny items, repeated (Pool.map)", 20},
     {"submit_result", "submit one tiny task, wait for its result, repeated (executor)", 10},
     {"as_completed_20k", "2*10^4 tiny submits, collected with as_completed (executor)", 30},
     {"map_1m", "pool:map of 10^6 tiny items, per item (Pool.map, default chunksize)", 5},
   }},
}

-- The "key<TAB>number" lines a command prints, as a table, or nil and why.
local function read_keyed(cmd)
  local p = io.popen(cmd)
  local out, text = {}, p:read("a")
  local ok = p:close()
  for key, us in text:gmatch("([%w_]+)\t([%d.eE+-]+)") do out[key] = tonumber(us) end
  if not ok or next(out) == nil then return nil, "no result from " .. cmd end
  return out
end

local function side_by_side(suite)
  local lua_cmd = shell_quote(arg[-1]) .. " " .. shell_quote(HERE .. "/" .. suite.name .. "_bench.lua")
  local par_us, err = read_keyed(lua_cmd)
  local p = io.popen("python3 " .. shell_quote(HERE .. "/" .. suite.name .. "_bench.py") .. " 2>/dev/null")
  local ok, py = pcall(par.decode, p:read("a"))
  p:close()
  return {suite = suite, par = par_us, err = err, python = ok and py or {}}
end

local function print_side_by_side(result)
  local suite = result.suite
  print()
  print(suite.title .. " (bench/" .. suite.name .. "_bench.lua, .py)")
  if not result.par then
    print("  not run: " .. tostring(result.err))
    return
  end
  local lines = {{"workload", "par", "Python", "par vs Python", "goal", "met"}}
  for _, row in ipairs(suite.rows) do
    local key, label, goal = row[1], row[2], row[3]
    local r = ratio(result.python[key], result.par[key])
    lines[#lines + 1] = {label, fmt_us(result.par[key]), fmt_us(result.python[key]), fmt_ratio(r),
                         goal .. "x", r == nil and "n/a" or (r >= goal and "met" or "NOT met")}
  end
  print_table(lines)
end

---------------------------------------------------------------------------
-- start-up and heap size: par.map of 2 items with 2 workers in processes
-- holding more and more data, next to a C floor that only forks (fork_floor.c)

local HEAP_MB = {0, 100, 500, 650, 1000}
local HEAP_GOAL_MB, HEAP_GOAL = 650, 2   -- at 650 MB, within 2x of the empty heap

local function heap_curve()
  local floor = read_keyed(shell_quote(HERE .. "/../build/fork_floor"))
  local points = {}
  for _, mb in ipairs(HEAP_MB) do
    local cmd = ("%s %s %d"):format(shell_quote(arg[-1]), shell_quote(HERE .. "/heap_startup.lua"), mb)
    local got = read_keyed(cmd) or {}
    points[#points + 1] = {mb = mb, us = got["startup_" .. mb], rss = got["rss_" .. mb]}
  end
  return {floor_us = floor and floor.fork_floor, points = points}
end

local function print_heap_curve(curve)
  print()
  print("start-up and heap size: par.map of 2 items, 2 workers, in a process holding data "
        .. "(bench/heap_startup.lua; half small tables, half 1 MB strings)")
  print("  floor: fork 2 children that write 1 byte each to a pipe, reap them (bench/fork_floor.c): "
        .. fmt_us(curve.floor_us))
  local empty = curve.points[1].us
  local lines = {{"data held", "resident", "par.map start-up", "vs empty heap", "vs floor"}}
  for _, pt in ipairs(curve.points) do
    lines[#lines + 1] = {pt.mb .. " MB", pt.rss and ("%.0f MB"):format(pt.rss) or "n/a",
                         fmt_us(pt.us), fmt_ratio(ratio(pt.us, empty)), fmt_ratio(ratio(pt.us, curve.floor_us))}
  end
  print_table(lines)
  for _, pt in ipairs(curve.points) do
    if pt.mb == HEAP_GOAL_MB then
      local r = ratio(pt.us, empty)
      print(("goal: start-up at %d MB within %sx of the empty heap: %s (got %s)"):format(
        HEAP_GOAL_MB, HEAP_GOAL, r == nil and "n/a" or (r <= HEAP_GOAL and "met" or "NOT met"), fmt_ratio(r)))
    end
  end
end

---------------------------------------------------------------------------

local function main()
  io.stdout:setvbuf("line")
  print_header()
  local rows = {}
  local workloads = {
    {"startup", bench_startup}, {"1M tiny items", bench_tiny, floor_tiny},
    {"20k items chunk=1", bench_chunk1}, {"CPU-bound items", bench_cpu},
    {"big results", bench_big, floor_big},
  }
  for _, w in ipairs(workloads) do
    progress("running %s ...", w[1])
    local row = w[2]()
    if w[3] then row.floor = w[3]() end
    rows[#rows + 1] = row
  end
  progress("running queue/imap streaming ...")
  local streaming = bench_streaming()
  progress("running codec ...")
  local codec, codec_err = codec_rows()
  progress("running start-up and heap size ...")
  local curve = heap_curve()
  local sides = {}
  for _, suite in ipairs(SIDE_BY_SIDE) do
    progress("running %s ...", suite.name)
    sides[#sides + 1] = side_by_side(suite)
  end
  progress("running MPI ...")
  local mpi = mpi_rows()

  print_results(rows)
  print_speedups(rows[4])
  print_goals(rows)
  print_floors(rows)
  print_streaming(streaming)
  print_codec(codec, codec_err)
  print_heap_curve(curve)
  for _, result in ipairs(sides) do print_side_by_side(result) end
  print_mpi(mpi)
end

main()
