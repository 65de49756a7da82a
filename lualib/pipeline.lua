-- par.pipeline: read -> transform in parallel -> aggregate, as a chain of
-- stages that stream into each other. Each stage is a par.imap over the
-- stage before it, so every stage has its own workers and memory stays
-- bounded by the stages' capacities, however long the source.
local par, meter_for, check_source = ...

local Pipeline = {}
Pipeline.__index = Pipeline
Pipeline.__name = "par.Pipeline"

-- Adds a parallel stage: fn runs on every item in a worker; a nil result
-- drops the item. opts as for par.imap (workers, init, capacity, ordered, seed).
function Pipeline:map(fn, opts)
  local mt = getmetatable(fn)
  if type(fn) ~= "function" and not (type(mt) == "table" and mt.__call) then
    error(("bad argument #1 to 'map' (function expected, got %s)"):format(type(fn)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #2 to 'map' (table expected, got %s)"):format(type(opts)), 2)
  end
  local stages = {table.unpack(self.stages)}
  stages[#stages + 1] = {fn = fn, opts = opts}
  return setmetatable({source = self.source, stages = stages, opts = self.opts}, Pipeline)
end

-- Items of a stage's output, skipping dropped (nil) results; each drop is
-- an item done, for the meter.
local function values_of(iter, state, control, meter)
  return function()
    while true do
      local id, value = iter(state, control)
      if id == nil then return nil end
      if value ~= nil then return value end
      meter:add(1)
    end
  end
end

-- A stage's options for par.imap: its own line only if it asks for one,
-- as the pipeline draws the line for the whole.
local function stage_options(opts)
  local copy = {progress = false}
  for k, v in pairs(opts or {}) do copy[k] = v end
  return copy
end

-- Iterates over the last stage's results: for value in p:run() do ... end.
-- Results keep source order unless a stage says ordered = false.
function Pipeline:run()
  local upstream = self.source
  local meter = meter_for("par.pipeline", type(upstream) == "table" and rawlen(upstream) or nil, self.opts, 2)
  local queues = {}
  local function stop_all(_, err)
    for i = #queues, 1, -1 do getmetatable(queues[i]).__close(queues[i], err) end
    if err == nil then meter:close() else getmetatable(meter).__close(meter) end
  end
  for n, stage in ipairs(self.stages) do
    local ok, iter, state, control, q = pcall(par.imap, stage.fn, upstream, stage_options(stage.opts))
    if not ok then
      stop_all(nil, iter) -- a stage that cannot start takes the ones before it down
      local bad_option = type(iter) == "string" and iter:match("bad argument #3 to 'imap' %((.*)%)$")
      if bad_option then error(("par.pipeline: stage %d: %s"):format(n, bad_option), 0) end
      error(iter, 0)
    end
    queues[#queues + 1] = q
    upstream = values_of(iter, state, control, meter)
  end
  if type(upstream) == "table" then -- no stages: the list itself
    local list, i = upstream, 0
    upstream = function() i = i + 1; return list[i] end
  end
  local last = upstream
  upstream = function()
    local value = last()
    if value == nil then meter:close() else meter:add(1) end
    return value
  end
  -- leaving the loop early (break, error) stops every stage's workers
  local closer = setmetatable({}, {__close = stop_all})
  return upstream, nil, nil, closer
end

-- Folds the results with fn(acc, value) in the parent.
function Pipeline:reduce(fn, acc)
  for value in self:run() do acc = fn(acc, value) end
  return acc
end

-- All results in a list.
function Pipeline:collect()
  local out = {}
  for value in self:run() do out[#out + 1] = value end
  return out
end

local pipeline_options = {progress = true, on_progress = true}

return function(source, opts)
  if type(source) ~= "table" and type(source) ~= "function" then
    error(("bad argument #1 to 'pipeline' (table or function expected, got %s)"):format(type(source)), 2)
  end
  check_source(source, 1, "pipeline", "par.pipeline(t)")
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #2 to 'pipeline' (table expected, got %s)"):format(type(opts)), 2)
  end
  for name in pairs(opts or {}) do
    if not pipeline_options[name] then
      error(("bad argument #2 to 'pipeline' (unknown option '%s')"):format(tostring(name)), 2)
    end
  end
  local check = meter_for("par.pipeline", nil, opts, 2) -- the values raise now, not at run
  getmetatable(check).__close(check)
  return setmetatable({source = source, stages = {}, opts = opts}, Pipeline)
end
