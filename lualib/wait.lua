-- Waiting on many futures at once: par.as_completed and par.wait, for
-- futures of one pool or several (lualib/pool.lua).
local par, futures = ...
local Error, Future, deadline_of, left = par.Error, futures.Future, futures.deadline_of, futures.left

-- The pools the futures belong to, checked.
local function pools_of(futures, fname)
  if type(futures) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(futures)), 3)
  end
  local pools = {}
  for i, f in ipairs(futures) do
    if getmetatable(f) ~= Future then
      error(("bad argument #1 to '%s' (futures expected, item %d is a %s)"):format(fname, i, type(f)), 3)
    end
    pools[f.pool] = true
  end
  return pools
end

-- Takes in outcomes for the pending futures' pools until one comes or the deadline passes.
local function pump_any(pools, deadline)
  local list = {}
  for pool in pairs(pools) do if pool:_has_work() then list[#list + 1] = pool end end
  if #list == 0 then return false end
  if #list == 1 then return list[1]:_pump(left(deadline)) end
  for _, pool in ipairs(list) do if pool:_pump(0) then return true end end
  par.sleep(math.min(0.001, left(deadline) or 0.001))
  return false
end

local function timeout_error(fname, pending, total, timeout)
  return setmetatable({fn = fname, kind = "timeout",
    message = ("%d of %d futures not done after %g s"):format(pending, total, timeout)}, Error)
end

-- for f in par.as_completed(futures [, timeout]): each future once, as it is done.
function par.as_completed(futures, timeout)
  local pools = pools_of(futures, "as_completed")
  local deadline = deadline_of(timeout, "as_completed")
  local ready, next_ready, pending = {}, 1, 0 -- settle appends to ready
  for _, f in ipairs(futures) do
    if f:done() then ready[#ready + 1] = f else f.watch = ready; pending = pending + 1 end
  end
  return function()
    while ready[next_ready] == nil do
      if pending == 0 then return nil end
      if not pump_any(pools, deadline) and deadline and par.now() >= deadline then
        error(timeout_error("par.as_completed", pending, #futures, timeout), 2)
      end
    end
    local f = ready[next_ready]
    next_ready = next_ready + 1
    if f.watch then f.watch = nil; pending = pending - 1 end
    return f
  end
end

local return_whens = {all = true, first = true, first_error = true}

-- done, pending = par.wait(futures, {timeout =, return_when =}): lists in the given order.
function par.wait(futures, opts)
  local pools = pools_of(futures, "wait")
  opts = opts or {}
  local when = opts.return_when or "all"
  if not return_whens[when] then
    error(("bad argument #2 to 'wait' (return_when must be \"all\", \"first\" or \"first_error\", got %s)")
          :format(tostring(when)), 2)
  end
  local deadline = deadline_of(opts.timeout, "wait")
  local function finished()
    local done, failed = 0, false
    for _, f in ipairs(futures) do
      if f:done() then done = done + 1; failed = failed or f.err ~= nil end
    end
    return done == #futures or (when == "first" and done > 0) or (when == "first_error" and failed)
  end
  while not finished() do
    if not pump_any(pools, deadline) and deadline and par.now() >= deadline then break end
  end
  local done, pending = {}, {}
  for _, f in ipairs(futures) do table.insert(f:done() and done or pending, f) end
  return done, pending
end
