-- The Lua half of the par module: the error type, par.imap and
-- par.pipeline, and the public table. Receives from luaopen_par the C
-- functions and par.version, the error metatable, a loader of the other
-- built-in parts and the progress meter's constructor (runtime/progress.c).
local core, Error, load_part, new_meter = ...
local pool_core = {} -- par.pool's alone, not public
for _, name in ipairs({"retire", "list_of_size", "slice", "push_raw", "take_range"}) do
  pool_core[name], core[name] = core[name], nil
end

Error.__name = "par.Error"
Error.__index = Error

function Error:__tostring()
  local where = self.index and (" item " .. self.index) or ""
  local head
  if self.syscall then -- the message names the call: "cannot fork: ..."
    head = ("%s:%s %s"):format(self.fn, where, self.message)
  elseif self.kind == "error" then
    head = ("%s:%s failed: %s"):format(self.fn, where, self.message)
  else
    head = ("%s:%s %s: %s"):format(self.fn, where, self.kind, self.message)
  end
  if self.traceback and self.traceback ~= "" then
    return head .. "\nworker " .. self.traceback
  end
  return head
end

local par = {Error = Error}
for name, fn in pairs(core) do par[name] = fn end

-- A progress meter for fn ("par.imap") over total items (nil: not known);
-- a bad option is a bad argument #arg of fn's caller.
local function meter_for(fn, total, opts, arg)
  local ok, meter = pcall(new_meter, fn, total, opts)
  if not ok then
    error(("bad argument #%d to '%s' (%s)"):format(arg, fn:match("[^.]*$"), meter), 3)
  end
  return meter
end

local function is_callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

-- What a source must not be: a dictionary, which would give nothing, or
-- the iterator of ipairs(t) or pairs(t), whose list would land in opts.
local ipairs_step, pairs_step = ipairs({}), pairs({})
local function check_source(source, arg, fname, right_call)
  local why
  if type(source) == "table" and rawlen(source) == 0 and next(source) ~= nil then
    why = "list expected, got a table with keys but no items 1..n"
  elseif source == ipairs_step then
    why = "got ipairs(t): pass the list itself, " .. right_call
  elseif source == pairs_step then
    why = "got pairs(t): pass a list, or a function that returns the next item"
  end
  if why then error(("bad argument #%d to '%s' (%s)"):format(arg, fname, why), 3) end
end

-- A source as a function returning the next item, or nothing at the end;
-- a list becomes its indices, so its items reach workers through the fork.
local function source_items(source)
  if type(source) == "table" then
    local i, n = 0, rawlen(source)
    return function()
      if i < n then i = i + 1; return true, i end
    end, true
  end
  return function()
    local item = source()
    if item ~= nil then return true, item end
  end, false
end

-- par.imap(fn, source [, opts]) -> iterator: results as they are ready,
-- with bounded look-ahead, for `for i, result[, err] in par.imap(...)`.
function par.imap(fn, source, opts)
  if not is_callable(fn) then
    error(("bad argument #1 to 'imap' (function expected, got %s)"):format(type(fn)), 2)
  end
  if type(source) ~= "table" and type(source) ~= "function" then
    error(("bad argument #2 to 'imap' (table or function expected, got %s)"):format(type(source)), 2)
  end
  check_source(source, 2, "imap", "par.imap(fn, t)")
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #3 to 'imap' (table expected, got %s)"):format(type(opts)), 2)
  end
  local next_item, is_list = source_items(source)
  local meter = meter_for("par.imap", is_list and rawlen(source) or nil, opts, 3)
  local qopts = {}
  for k, v in pairs(opts or {}) do qopts[k] = v end
  qopts.progress, qopts.on_progress = nil, nil -- the meter's, not the queue's
  if qopts.ordered == nil then qopts.ordered = true end
  local work = fn
  if is_list then
    local list = source
    work = function(i) return fn(list[i]) end
  end
  -- the queue checks the options; its messages are reworded for imap
  local made, q = pcall(core.queue, work, qopts, "par.imap")
  if not made then
    if type(q) ~= "string" then error(q, 0) end -- a par error (fork, init) as it is
    error((q:gsub("^.-bad argument #2 to '[^']*'", "bad argument #3 to 'imap'")), 2)
  end
  local function counted(id, ...)
    if id == nil then meter:close() else meter:add(1) end
    return id, ...
  end
  -- the loop's closing value: the queue's methods, and a close that ends the meter too
  local handle = setmetatable({}, {
    __index = function(_, name)
      local method = q[name]
      return function(_, ...) return method(q, ...) end
    end,
    __close = function(_, err)
      getmetatable(q).__close(q)
      if err == nil then meter:close() else getmetatable(meter).__close(meter) end
    end,
  })
  local limit = q:capacity()
  local exhausted = false
  local taken = 0 -- items taken from the source so far
  local function push(item)
    taken = taken + 1
    local ok, err = pcall(q.push, q, item)
    if not ok then
      error(("par.imap: source item %d: %s"):format(taken,
        (tostring(err):gsub("^.-bad argument #%d to '[^']*' %((.*)%)$", "%1"))), 3)
    end
  end
  local function step()
    while not exhausted and q:pending() < limit do
      local more, item = next_item()
      if more then push(item) else exhausted = true; q:close() end
    end
    return counted(q:pop())
  end
  -- a break stops the workers at once
  return step, nil, nil, handle
end

par.pipeline = load_part("pipeline")(par, meter_for, check_source)
local ship = load_part("ship")(par)
local futures = load_part("pool")(par, ship, load_part("runner")(par, ship, pool_core.retire), new_meter, pool_core) -- par.pool
load_part("wait")(par, futures) -- par.as_completed, par.wait

return par
