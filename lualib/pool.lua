-- par.pool: warm workers that run any function, with futures. The pool is
-- a par.queue whose one function (lualib/runner.lua) runs what each item
-- names: a batch of calls (submit) or a range of a list (map). Functions
-- travel described (lualib/ship.lua) and each worker keeps those it
-- built, by id, so a function is described to a worker once. Work waits
-- in the parent until a worker has room: until then a future can be
-- cancelled.
local par, ship, runner, new_meter, core = ...
local list_of_size, slice, push_raw, take_range = core.list_of_size, core.slice, core.push_raw, core.take_range
local MISS = runner.MISS
local Error = par.Error

local Pool, Future = {}, {}
Pool.__index, Pool.__name = Pool, "par.pool"
Future.__index, Future.__name = Future, "par.Future"

local BATCH_MAX = 64     -- calls in one item, when many wait
local CHUNK_MAX = 4096   -- list items in one item
local ONE_RANGE_S = 0.0002 -- a map whose items take less in all goes to one worker
local RANGE_S = 0.002    -- a range aims at no more than this
local SAME_CODE_MAX = 8  -- closures of one code the parent knows by their upvalues

local NONE = {} -- for loops over what may be absent

local function new_error(kind, message, index)
  return setmetatable({fn = "par.pool", kind = kind, message = message, index = index}, Error)
end

-- Futures -------------------------------------------------------------------

local function new_future(pool)
  return setmetatable({pool = pool, state = "pending"}, Future)
end

-- The future's outcome, once: results packed after a true, or an error.
-- Ends a progress meter: with a summary, or cleared after an error.
local function end_meter(meter, err)
  if err == nil then meter:close() else getmetatable(meter).__close(meter) end
end

local function settle(f, packed, err)
  if f.state == "done" or f.state == "cancelled" then return end
  f.state, f.packed, f.err = "done", packed, err
  if f.watch then f.watch[#f.watch + 1] = f end
  if f.map and f.map.meter then end_meter(f.map.meter, err) end
end

function Future:done()
  return self.state == "done" or self.state == "cancelled"
end

function Future:cancel()
  if self.state == "pending" then
    settle(self, nil, new_error("cancelled", "cancelled before it started", self.index))
    self.state = "cancelled"
  end
  return self.state == "cancelled"
end

function Future:cancelled()
  return self.state == "cancelled"
end

-- Pumping ------------------------------------------------------------------

local function deadline_of(timeout, fname)
  if timeout == nil then return nil end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error(("bad argument #1 to '%s' (non-negative number expected, got %s)"):format(fname, tostring(timeout)), 3)
  end
  return par.now() + timeout
end

local function left(deadline)
  if deadline == nil then return nil end
  return math.max(0, deadline - par.now())
end

-- Waits until the future is done or the deadline passes; returns whether it is done.
local function wait_for(f, deadline)
  local pool = f.pool
  while not f:done() do
    if not pool:_pump(left(deadline)) and deadline and par.now() >= deadline then return false end
  end
  return true
end

function Future:result(timeout)
  if not wait_for(self, deadline_of(timeout, "result")) then return nil, "timeout" end
  if self.err then error(self.err, 0) end
  return table.unpack(self.packed, 2, self.packed.n)
end

-- The pool -------------------------------------------------------------------

local queue_options = {workers = true, init = true, timeout = true}
local pool_options = {workers = true, init = true, timeout = true, retries = true, seed = true, max_tasks = true}

local function check_count(opts, name, least)
  local v = opts[name]
  if v ~= nil and (math.type(v) ~= "integer" or v < least) then
    error(("bad argument #1 to 'pool' (option '%s' must be an integer >= %d)"):format(name, least), 3)
  end
  return v
end

local function read_options(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #1 to 'pool' (table expected, got %s)"):format(type(opts)), 3)
  end
  opts = opts or {}
  for name in pairs(opts) do
    if not pool_options[name] then
      error(("bad argument #1 to 'pool' (unknown option '%s')"):format(tostring(name)), 3)
    end
  end
  local qopts = {}
  for name in pairs(queue_options) do qopts[name] = opts[name] end
  return qopts, check_count(opts, "retries", 0) or 0, check_count(opts, "seed", math.mininteger),
         check_count(opts, "max_tasks", 1)
end

function par.pool(opts)
  local qopts, retries, seed, max_tasks = read_options(opts)
  local workers = qopts.workers and math.min(qopts.workers, 4096) or par.workers()
  local limit = 2 * workers -- items workers hold: each takes two ahead
  qopts.capacity, qopts.on_error = limit, "collect"
  local made, q = pcall(par.queue, runner.make(seed, max_tasks), qopts)
  if not made then
    if type(q) ~= "string" then q.fn = "par.pool"; error(q, 2) end -- a fork error as it is
    error((q:gsub("^.-bad argument #2 to '[^']*'", "bad argument #1 to 'pool'")), 2)
  end
  return setmetatable({
    q = q, workers = workers, limit = limit, retries = retries, max_tasks = max_tasks,
    backlog = {}, head = 1, tail = 0, -- items waiting for room, by position
    inflight = {}, running = 0,       -- queue id -> item
    fns = setmetatable({}, {__mode = "k"}), by_code = {}, next_fn = 0,
    range_wire = {a = {}, n = 0},
    tasks = 0,
  }, Pool)
end

-- The id under which workers know fn, and its record: described once per
-- function and upvalues, whatever closure carries them. An error is
-- raised at 'level' above this function.
function Pool:_function(fn, fname, level)
  local rec = self.fns[fn]
  if rec and ship.same_upvalues(fn, rec.upvalues) then return rec end
  local ok, desc = pcall(ship.describe, fn, fname)
  if not ok then error(desc, level + 1) end
  local key = desc.lib and table.concat(desc.lib, ".") or desc[1].code
  local upvalues = ship.upvalues(fn)
  for _, known in ipairs(self.by_code[key] or {}) do
    if ship.same_upvalues(fn, known.upvalues) then self.fns[fn] = known; return known end
  end
  self.next_fn = self.next_fn + 1
  rec = {id = self.next_fn, desc = desc, upvalues = upvalues, sent = 0}
  rec.alone = {rec} -- the functions of an item of its calls alone
  local same = self.by_code[key] or {}
  if #same == SAME_CODE_MAX then table.remove(same, 1) end
  same[#same + 1] = rec
  self.by_code[key] = same
  self.fns[fn] = rec
  return rec
end

-- The descriptions an item carries: for its first sends, as each worker
-- is likely to need them, and after a worker said it lacks one.
local function descriptions(self, fns, needs)
  local descs
  for _, rec in ipairs(fns) do
    if needs or rec.sent < self.workers then
      rec.sent = rec.sent + 1
      descs = descs or {}
      descs[rec.id] = rec.desc
    end
  end
  return descs
end

-- A range of a map: items lo..lo+n-1 of its list, counted from the map's base.
local function range_item(map, lo, n, attempts)
  return {map = map, fns = map.rec.alone, attempts = attempts, lo = lo, n = n}
end

-- What goes to the queue for n items of list from 'from' on, the first
-- of them item lo of a map of fn_id: a slice of the list, which the push
-- encodes as the array of those items, in one table reused for every range.
local function range_wire(self, list, from, n, fn_id, lo)
  local wire = self.range_wire
  wire.a, wire.m, wire.lo, wire.n = slice(list, from, n), fn_id, lo, n
  return wire
end

-- What goes to the queue for an item.
local function wire_of(self, item)
  if not item.map then return item.wire end
  local map = item.map
  return range_wire(self, map.list, item.lo - map.base, item.n, map.rec.id, item.lo)
end

local function backlog_push_front(self, item)
  self.head = self.head - 1
  self.backlog[self.head] = item
end

local function backlog_push(self, item)
  self.tail = self.tail + 1
  self.backlog[self.tail] = item
end

local function backlog_take(self)
  local item = self.backlog[self.head]
  self.backlog[self.head] = nil
  self.head = self.head + 1
  return item
end

local function backlog_count(self)
  return self.tail - self.head + 1
end

-- A call alone in an item, as it runs again.
local function call_item(f, attempts)
  return {futures = {f}, fns = f.fn_rec.alone, attempts = attempts, wire = {u = {f.call}}}
end

-- An item of the submitted calls waiting at the front, up to 'most' of
-- them; cancelled ones are dropped. nil when all were cancelled.
local function gather_calls(self, most)
  local item
  while backlog_count(self) > 0 and getmetatable(self.backlog[self.head]) == Future do
    local f = backlog_take(self)
    if not f:done() then
      if item == nil then
        item = call_item(f, 1)
      else
        local calls, fns = item.wire.u, item.fns
        calls[#calls + 1], item.futures[#calls + 1] = f.call, f
        if fns[#fns] ~= f.fn_rec then -- a repeat further back only counts twice
          if fns == item.futures[1].fn_rec.alone then fns = {fns[1]}; item.fns = fns end -- shared: copied
          fns[#fns + 1] = f.fn_rec
        end
      end
      if #item.futures >= most then break end
    end
  end
  return item
end

local function send(self, item)
  local wire = wire_of(self, item)
  wire.d = descriptions(self, item.fns, item.needs)
  local id = item.map and push_raw(self.q, wire) or self.q:push(wire) -- a range's results stay text: range_done
  self.inflight[id] = item
  self.running = self.running + 1
  if item.futures then
    for _, f in ipairs(item.futures) do f.state = "running" end
  end
end

-- Items for the next range of a map: as many as take RANGE_S by the cost
-- an item of fn took last, but no more than a share of what is left, so
-- the tail stays balanced; all, if they cost less in all than waking a
-- second worker would; one, while that cost is not known.
local function range_size(self, map, left)
  if map.chunk then return map.chunk end
  local cost = map.rec.item_cost
  if cost == nil then return 1 end
  if left * cost < ONE_RANGE_S then return left end
  return math.max(1, math.min(CHUNK_MAX, RANGE_S // cost, math.ceil(left / (2 * self.workers))))
end

-- Cuts the next range off the rest of a map at the front of the backlog.
local function cut_range(self, rest)
  local size = math.min(rest.n, range_size(self, rest.map, rest.n))
  if size == rest.n then
    rest.rest = nil
    return backlog_take(self)
  end
  rest.map.parts = rest.map.parts + 1
  local item = range_item(rest.map, rest.lo, size, 1)
  rest.lo, rest.n = rest.lo + size, rest.n - size
  return item
end

-- Hands waiting work to the queue while workers have room: calls in
-- batches when many wait, list ranges and calls that run again as they are.
function Pool:_fill()
  while self.running < self.limit and backlog_count(self) > 0 do
    local item
    if getmetatable(self.backlog[self.head]) == Future then
      local most = self.max_tasks and 1 or math.min(BATCH_MAX, backlog_count(self) // self.limit + 1)
      item = gather_calls(self, most)
    elseif self.backlog[self.head].map and self.backlog[self.head].map.future:done() then
      backlog_take(self) -- its map failed
    elseif self.backlog[self.head].rest then
      item = cut_range(self, self.backlog[self.head])
    else
      item = backlog_take(self)
    end
    if item then send(self, item) end
  end
end

-- The futures of waiting or running work: a call's or its map's.
local function futures_of(entry, into)
  if getmetatable(entry) == Future then into[#into + 1] = entry
  elseif entry.map then into[#into + 1] = entry.map.future
  else for _, f in ipairs(entry.futures) do into[#into + 1] = f end end
end

-- Fails every unfinished future with err, as the pool ends.
local function fail_all(self, err)
  local all = {}
  for i = self.head, self.tail do futures_of(self.backlog[i], all) end
  for _, item in pairs(self.inflight) do futures_of(item, all) end
  for _, f in ipairs(all) do settle(f, nil, err) end
  self.backlog, self.head, self.tail, self.inflight, self.running = {}, 1, 0, {}, 0
end

-- The error err (from the queue) as the error of the call or list item 'index'.
local function as_item_error(err, index, attempts)
  err.fn = "par.pool"
  if err.index then err.message = err.message:gsub("item " .. err.index, "item " .. index) end
  err.index = index
  if attempts > 1 then err.attempts = attempts end
  return setmetatable(err, Error)
end

-- Items of one call or list item each, for the calls or items of 'item', in order.
local function split(item)
  local parts = {}
  if item.map then
    for j = 1, item.n do
      parts[j] = range_item(item.map, item.lo + j - 1, 1, 1)
    end
  else
    for k, f in ipairs(item.futures) do
      parts[k] = call_item(f, 1)
    end
  end
  return parts
end

local function retry(self, item)
  item.attempts = item.attempts + 1
  backlog_push_front(self, item)
end

-- Items of a map finished, for its progress meter. An error of
-- on_progress is the map's outcome, as it is par.map's.
local function count_done(map, n)
  if not map.meter or n == 0 or map.future:done() then return end
  local ok, err = pcall(map.meter.add, map.meter, n)
  if not ok then settle(map.future, nil, err) end
end

local function map_item_failed(self, map, lo, err)
  if map.collect then
    map.errs = map.errs or {}
    map.errs[lo - map.base] = err
  elseif not map.future:done() then
    settle(map.future, nil, err)
  end
end

-- A single call or list item failed with err: it runs again, or that is its outcome.
local function one_failed(self, item, err)
  if item.attempts <= self.retries then return retry(self, item) end
  if item.map then
    map_item_failed(self, item.map, item.lo, as_item_error(err, item.lo, item.attempts))
    count_done(item.map, 1)
    return self:_map_part_done(item.map)
  end
  local f = item.futures[1]
  settle(f, nil, as_item_error(err, f.index, item.attempts))
end

-- The queue failed a whole item: a worker lacked a function, crashed, ran
-- out of time, or the results could not travel.
local function item_failed(self, item, err)
  if type(err.value) == "table" and err.value[MISS] then
    item.needs = true
    return backlog_push_front(self, item)
  end
  local count = item.map and item.n or #item.futures
  if count == 1 then return one_failed(self, item, err) end
  if item.map then item.map.parts = item.map.parts + count - 1 end
  local parts = split(item)
  for k = #parts, 1, -1 do backlog_push_front(self, parts[k]) end
end

local function captured_error(capture)
  capture.kind = "error"
  return capture
end

-- A range's outcome, the text of its results and errors: the results go
-- straight into the map's list.
local function range_done(self, item, text)
  local map = item.map
  local succeeded = item.n
  if map.future:done() then return end
  local r = take_range(text, map.results, item.lo - map.base)
  map.rec.item_cost = r.ns / 1e9 / item.n
  for j, capture in pairs(r.e or NONE) do
    local one = range_item(map, item.lo + j - 1, 1, item.attempts)
    map.parts = map.parts + 1
    succeeded = succeeded - 1
    one_failed(self, one, captured_error(capture))
  end
  count_done(map, succeeded)
  self:_map_part_done(map)
end

local function calls_done(self, item, outcomes)
  for k, f in ipairs(item.futures) do
    local packed = outcomes[k]
    if packed[1] then
      settle(f, packed)
    else
      one_failed(self, call_item(f, item.attempts), captured_error(packed[2]))
    end
  end
end

-- The queue's next outcome, waiting up to timeout seconds (nil: as long
-- as it takes). An error, from a dead queue (an interrupt, or init failed)
-- or from the host's SIGINT hook as the pop returned, with the outcome it
-- took, fails every unfinished future, stops the workers and is raised.
local function pop(self, timeout)
  local ok, id, r, err = pcall(self.q.pop, self.q, timeout)
  if not ok then
    if type(id) == "table" then id.fn = "par.pool" end
    self.dead = id
    fail_all(self, id)
    getmetatable(self.q).__close(self.q)
    error(id, 0)
  end
  return id, r, err
end

-- What the queue said of a sent item: its outcome, or that it failed whole.
local function take_outcome(self, item, r, err)
  self.running = self.running - 1
  if err ~= nil then item_failed(self, item, err)
  elseif item.map then range_done(self, item, r)
  else calls_done(self, item, r) end
  self:_fill()
end

-- Takes in one outcome from the workers, waiting up to timeout seconds
-- (nil: as long as it takes); returns whether one came.
function Pool:_pump(timeout)
  self:_fill()
  if self.running == 0 then return false end
  local id, r, err = pop(self, timeout)
  if id == nil then return false end
  local item = self.inflight[id]
  self.inflight[id] = nil
  take_outcome(self, item, r, err)
  return true
end

-- Whether the pool has work waiting or running, for par.wait and par.as_completed.
function Pool:_has_work()
  return self.running > 0 or backlog_count(self) > 0
end

local function check_open(self, fname)
  if getmetatable(self) ~= Pool then
    error(("bad argument #1 to '%s' (par.pool expected, got %s)"):format(fname, type(self)), 3)
  end
  if self.dead then error(self.dead, 3) end
  if self.closed then error(("par.pool: %s on a closed pool"):format(fname), 3) end
end

local function check_function(fn, fname, arg)
  if type(fn) ~= "function" then
    error(("bad argument #%d to '%s' (function expected, got %s)"):format(arg, fname, type(fn)), 3)
  end
end

local scalar = {number = true, string = true, boolean = true, ["nil"] = true}

local function all_scalars(args)
  for i = 1, args.n do
    if not scalar[type(args[i])] then return false end
  end
  return true
end

function Pool:submit(fn, ...)
  check_open(self, "submit")
  check_function(fn, "submit", 1)
  local rec = self:_function(fn, "submit", 2)
  local args = table.pack(...)
  if self.running >= self.limit and not all_scalars(args) then -- it waits: its arguments must travel later
    local ok, why = pcall(par.encode, args)
    if not ok then
      error((why:gsub("^bad argument #1 to '[^']*'", "bad argument #2 to 'submit'"):gsub("at value", "at args")), 2)
    end
  end
  self.tasks = self.tasks + 1
  local f = new_future(self)
  f.index, f.fn_rec, f.call = self.tasks, rec, {rec.id, args, self.tasks}
  if self.running < self.limit then
    local ok, why
    if backlog_count(self) == 0 then
      ok, why = pcall(send, self, call_item(f, 1)) -- nothing waits: it goes as it is
    else
      backlog_push(self, f)
      ok, why = pcall(self._fill, self)
    end
    if not ok then
      if type(why) ~= "string" then error(why, 0) end
      self.tasks = self.tasks - 1 -- as if never submitted
      why = why:gsub("^.-bad argument #1 to 'push' %(", "bad argument #2 to 'submit' ("):gsub("item%.u%[1%]%[2%]", "args")
      error(why, 2)
    end
  else
    backlog_push(self, f)
  end
  return f
end

local map_options = {on_error = true, chunk = true, progress = true, on_progress = true}

-- A progress meter for a map of total items (nil: not known); a bad option
-- is a bad argument #3 to fname, raised at 'level'. With or_nil, nil for a
-- meter that would do nothing.
local function map_meter(opts, total, fname, level, or_nil)
  local ok, meter = pcall(new_meter, "par.pool", total, opts, or_nil)
  if not ok then error(("bad argument #3 to '%s' (%s)"):format(fname, meter), level + 1) end
  return meter
end

local function read_map_options(opts, fname)
  if opts == nil then return false, nil end
  if type(opts) ~= "table" then
    error(("bad argument #3 to '%s' (table expected, got %s)"):format(fname, type(opts)), 4)
  end
  for name in pairs(opts) do
    if not map_options[name] then
      error(("bad argument #3 to '%s' (unknown option '%s')"):format(fname, tostring(name)), 4)
    end
  end
  if opts.on_error ~= nil and opts.on_error ~= "raise" and opts.on_error ~= "collect" then
    error(("bad argument #3 to '%s' (option 'on_error' must be \"raise\" or \"collect\")"):format(fname), 4)
  end
  if opts.chunk ~= nil and (math.type(opts.chunk) ~= "integer" or opts.chunk < 1) then
    error(("bad argument #3 to '%s' (option 'chunk' must be an integer >= 1)"):format(fname), 4)
  end
  return opts.on_error == "collect", opts.chunk
end

-- One finished part of a map: with none left, its future has the results.
function Pool:_map_part_done(map)
  map.parts = map.parts - 1
  if map.parts > 0 or map.future:done() then return end
  settle(map.future, {n = 3, true, map.results, map.errs})
end

-- A future of fn's results over list, whose item j is item base + j for
-- errors and seeds. The list waits whole in the backlog; ranges are cut
-- from it as workers have room (see cut_range).
local function new_map(self, rec, list, n, collect, chunk, base)
  local f = new_future(self)
  local map = {future = f, results = list_of_size(n), collect = collect, parts = 0, base = base, list = list, rec = rec,
               chunk = chunk}
  f.map, f.state = map, "running" -- a map cannot be cancelled
  return map
end

local function queue_map(self, rec, list, collect, chunk, base)
  local n = rawlen(list)
  local map = new_map(self, rec, list, n, collect, chunk, base)
  local f = map.future
  if n == 0 then
    settle(f, {n = 3, true, map.results})
    return f
  end
  map.parts = 1
  local rest = range_item(map, base + 1, n, 1)
  rest.rest = true
  backlog_push(self, rest)
  self:_fill()
  return f
end

-- Checks a map's arguments; returns fn's record, the progress meter (nil
-- for none), whether errors are collected, and the chunk size.
local function map_arguments(self, fn, list, opts, fname)
  check_open(self, fname)
  check_function(fn, fname, 1)
  if type(list) ~= "table" then
    error(("bad argument #2 to '%s' (table expected, got %s)"):format(fname, type(list)), 3)
  end
  if rawlen(list) == 0 and next(list) ~= nil then
    error(("bad argument #2 to '%s' (list expected, got a table with keys but no items 1..n)"):format(fname), 3)
  end
  local collect, chunk = read_map_options(opts, fname)
  local meter = map_meter(opts, rawlen(list), fname, 3, true)
  return self:_function(fn, fname, 3), meter, collect, chunk
end

local function start_map(self, rec, list, meter, collect, chunk)
  local f = queue_map(self, rec, list, collect, chunk, 0)
  if f:done() then
    if meter then end_meter(meter) end
  else
    f.map.meter = meter -- no results come before a wait
  end
  return f
end

-- Whether a map of n items of fn goes whole to one worker at once: the
-- pool is idle and the items cost less in all than waking a second worker.
local function one_item_now(self, rec, n)
  local cost = rec.item_cost
  return cost ~= nil and n >= 1 and n <= CHUNK_MAX and n * cost < ONE_RANGE_S
         and self.running == 0 and backlog_count(self) == 0
end

-- A map that one_item_now allows, without a future or the backlog: the
-- common case of a warm pool that maps short lists in a loop. An outcome
-- other than all the results goes on as any map's would from there.
local function map_now(self, rec, list, n)
  local wire = range_wire(self, list, 1, n, rec.id, 1)
  wire.d = descriptions(self, rec.alone)
  push_raw(self.q, wire)
  self.running = self.running + 1
  local _, text, err = pop(self)
  if err == nil then
    local results = list_of_size(n)
    local r = take_range(text, results, 1)
    if r.e == nil then
      self.running = self.running - 1
      rec.item_cost = r.ns / 1e9 / n
      return results
    end
  end
  local map = new_map(self, rec, list, n, false, nil, 0)
  map.parts = 1
  take_outcome(self, range_item(map, 1, n, 1), text, err)
  return (map.future:result())
end

function Pool:map_async(fn, list, opts)
  local rec, meter, collect, chunk = map_arguments(self, fn, list, opts, "map_async")
  return start_map(self, rec, list, meter, collect, chunk)
end

function Pool:map(fn, list, opts)
  local rec, meter, collect, chunk = map_arguments(self, fn, list, opts, "map")
  if opts == nil and one_item_now(self, rec, rawlen(list)) then return map_now(self, rec, list, rawlen(list)) end
  local f = start_map(self, rec, list, meter, collect, chunk)
  local results, errs = f:result()
  if collect then return results, errs end
  return results
end

-- The source as a function returning the next 'chunk' items and their count, or nil at the end.
local function source_chunks(source, chunk)
  local at, n = 0, type(source) == "table" and rawlen(source)
  return function()
    local items, count = {}, 0
    while count < chunk do
      local item
      if n then
        if at >= n then break end
        at = at + 1
        item = source[at]
      else
        item = source()
        if item == nil then break end
      end
      count = count + 1
      items[count] = item
    end
    if count > 0 then return items, count end
  end
end

-- for i, result [, err] in pool:imap(fn, source [, opts]): par.imap's contract on the pool.
function Pool:imap(fn, source, opts)
  check_open(self, "imap")
  check_function(fn, "imap", 1)
  if type(source) ~= "table" and type(source) ~= "function" then
    error(("bad argument #2 to 'imap' (table or function expected, got %s)"):format(type(source)), 2)
  end
  local ordered, rest = true, opts
  if type(opts) == "table" and opts.ordered ~= nil then
    ordered, rest = opts.ordered, {}
    for k, v in pairs(opts) do if k ~= "ordered" then rest[k] = v end end
  end
  local collect, chunk = read_map_options(rest, "imap")
  local meter = map_meter(rest, type(source) == "table" and rawlen(source) or nil, "imap", 2)
  local rec = self:_function(fn, "imap", 2)
  chunk = chunk or (type(source) == "table" and math.max(1, rawlen(source) // (4 * self.limit)) or 1)
  local next_items, window, taken, exhausted = source_chunks(source, chunk), {}, 0, false
  local part, pos = nil, 0 -- the range being handed out, and where in it
  local function top_up()
    while not exhausted and #window < self.limit do
      local items, n = next_items()
      if items == nil then exhausted = true; break end
      window[#window + 1] = {future = queue_map(self, rec, items, collect, n, taken), base = taken, n = n}
      taken = taken + n
    end
  end
  local function next_part()
    local k = 1
    if not ordered then
      local futures = {}
      for j, w in ipairs(window) do futures[j] = w.future end
      local done = par.wait(futures, {return_when = "first"})
      for j, w in ipairs(window) do if w.future == done[1] then k = j end end
    end
    local w = table.remove(window, k)
    w.results, w.errs = w.future:result()
    return w
  end
  local function step()
    while part == nil or pos >= part.n do
      top_up()
      if #window == 0 then
        meter:close()
        return nil
      end
      part, pos = next_part(), 0
    end
    pos = pos + 1
    meter:add(1)
    local err = part.errs and part.errs[pos]
    if err then return part.base + pos, nil, err end
    return part.base + pos, part.results[pos]
  end
  -- the loop's closing value: a loop that breaks or raises ends the meter too
  return step, nil, nil, setmetatable({}, {__close = function(_, err) end_meter(meter, err) end})
end

function Pool:close()
  self.closed = true
end

-- Waits for the work of a closed pool to finish, then for its workers to exit.
function Pool:join()
  if getmetatable(self) ~= Pool then error("bad argument #1 to 'join' (par.pool expected)", 2) end
  if not self.closed then error("par.pool: join on an open pool (close it first)", 2) end
  if self.dead or self.joined then return end
  while self.running > 0 or backlog_count(self) > 0 do self:_pump() end
  self.q:close()
  self.q:pop() -- nothing left: the queue stops its workers
  self.joined = true
end

function Pool:terminate()
  self.closed = true
  if self.dead then return end
  self.dead = new_error("terminated", "the pool was terminated")
  fail_all(self, self.dead)
  getmetatable(self.q).__close(self.q)
end

function Pool:__close()
  self:close()
  self:join()
end

return {Future = Future, deadline_of = deadline_of, left = left}
