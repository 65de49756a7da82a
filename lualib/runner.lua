-- The worker's side of par.pool: the function its par.queue runs on
-- every item, which names what to run: a batch of calls (submit) or a
-- range of a list (map). It builds the functions the parent describes
-- (lualib/ship.lua) and keeps them by id, and says when it lacks one.
local par, ship, retire = ...

local MISS = "par.pool: function not here" -- a worker's answer for a function it lacks
local BUILT_MAX = 1024   -- functions a worker keeps built

-- The queue's function: forked into every worker with its own 'built'.
local function make_runner(seed, max_tasks)
  local built, kept, tasks = {}, 0, 0
  local function func(id, descs)
    local f = built[id]
    if f == nil then
      local desc = descs and descs[id]
      if desc == nil then error({[MISS] = id}) end
      if kept == BUILT_MAX then built, kept = {}, 0 end -- one asked for again is described again
      f = ship.build(desc)
      built[id], kept = f, kept + 1
    end
    return f
  end
  local function capture(e) -- as the worker's own handler does (runtime/worker.c)
    local where = debug.traceback(nil, 2):gsub("\n%s*%[C%]: in function 'xpcall'.*$", "")
      :gsub("\n[^\n]*lualib/runner%.lua[^\n]*", "") -- the pool's own frames
    local err = {message = type(e) == "string" and e or tostring(e), traceback = where}
    if type(e) ~= "string" and pcall(par.encode, e) then err.value = e end
    return err
  end
  -- One protected call for the whole range, not one per item: after an
  -- error it goes on from the next item.
  local function run_range(item)
    local f, list, n, lo, out, errs, at = func(item.m, item.d), item.a, item.n, item.lo, {}, nil, 1
    local function run()
      while at <= n do
        if seed then math.randomseed(seed, lo + at - 1) end
        out[at] = f(list[at])
        at = at + 1
      end
    end
    local started = par.now()
    while at <= n do
      local ok, err = xpcall(run, capture)
      if not ok then errs = errs or {}; errs[at] = err; at = at + 1 end
    end
    return {r = out, e = errs, ns = (par.now() - started) * 1e9 // 1 | 0} -- an integer travels faster
  end
  local function count(n) -- a worker that has run max_tasks ends after this item
    tasks = tasks + n
    if max_tasks and tasks >= max_tasks then retire() end
  end
  return function(item)
    if item.m then
      local results = run_range(item)
      count(1)
      return results
    end
    local calls, fs, out = item.u, {}, {}
    for k, call in ipairs(calls) do fs[k] = func(call[1], item.d) end -- a miss before any runs
    count(#calls)
    for k, call in ipairs(calls) do
      local args = call[2]
      if seed then math.randomseed(seed, call[3]) end
      out[k] = table.pack(xpcall(fs[k], capture, table.unpack(args, 1, args.n)))
    end
    return out
  end
end

return {make = make_runner, MISS = MISS}
