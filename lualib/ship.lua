-- Functions that travel: a pool's workers were forked before the function
-- existed, so the parent describes it as data (its bytecode, string.dump,
-- and each upvalue: the globals, another described function, a value of a
-- loaded library by name, or a copy of plain data) and the worker builds
-- it again from that description.
local par = ...

local ship = {}

-- Values that are named, not copied: every loaded module, and the C
-- functions and userdata (io.stdout) among its fields. Lua functions and
-- plain tables are copied: a global the parent set later is not in a worker.
local names

local function named_field(v)
  local t = type(v)
  return t == "userdata" or (t == "function" and debug.getinfo(v, "S").what == "C")
end

local function scan_libraries()
  local found = {}
  for mod, m in pairs(package.loaded) do
    if type(mod) == "string" and type(m) == "table" then
      found[m] = found[m] or {mod}
      for key, v in pairs(m) do
        if type(key) == "string" and found[v] == nil and named_field(v) then found[v] = {mod, key} end
      end
    end
  end
  return found
end

-- The library name of v, looking again once if a module loaded since.
local function library_name(v, rescan)
  if names == nil then names = scan_libraries() end
  if names[v] == nil and rescan then names = scan_libraries() end
  return names[v]
end

local function cannot_travel(fname, path, why)
  error(("bad argument #1 to '%s' (upvalue '%s' %s, which cannot travel)"):format(fname, path, why), 0)
end

-- Describes fn as a list of functions, the first fn itself, so that
-- recursive and shared functions are described once. Raises a bad
-- argument, naming the upvalue, for one that cannot travel.
function ship.describe(fn, fname)
  if debug.getinfo(fn, "S").what == "C" then
    local name = library_name(fn, true)
    if name == nil then
      error(("bad argument #1 to '%s' (a C function not found in any loaded module)"):format(fname), 0)
    end
    return {lib = name}
  end
  local desc, index = {}, {}
  local add
  local function upvalue(name, v, path)
    local t = type(v)
    if name == "_ENV" then return {"env"} end -- whatever table it was: the worker's globals
    if t == "function" and debug.getinfo(v, "S").what ~= "C" then return {"fn", add(v, path .. ".")} end
    if t == "table" or t == "function" or t == "userdata" then
      local lib = library_name(v, t ~= "table")
      if lib ~= nil then return {"lib", lib} end
    end
    if t == "function" then cannot_travel(fname, path, "is a C function not found in any loaded module") end
    if t == "userdata" or t == "thread" then cannot_travel(fname, path, "is a " .. t) end
    if t == "table" then
      local ok, err = pcall(par.encode, v)
      if not ok then
        local lib = library_name(v, true) -- a module loaded since the last look
        if lib ~= nil then return {"lib", lib} end
        cannot_travel(fname, path, "holds a value that " .. err:match("%((.*)%)$"))
      end
    end
    return {"v", v}
  end
  function add(f, path)
    if index[f] then return index[f] end
    local entry = {code = string.dump(f), ups = {}}
    desc[#desc + 1] = entry
    index[f] = #desc
    for i = 1, math.huge do
      local name, v = debug.getupvalue(f, i)
      if name == nil then break end
      entry.ups[i] = upvalue(name, v, path .. name)
    end
    return index[f]
  end
  add(fn, "")
  return desc
end

-- fn's upvalues as they are now, to tell later whether they changed.
function ship.upvalues(fn)
  local values = {n = 0}
  for i = 1, math.huge do
    local name, v = debug.getupvalue(fn, i)
    if name == nil then break end
    values[i], values.n = v, i
  end
  return values
end

-- Whether fn's upvalues are still the values 'values' noted.
function ship.same_upvalues(fn, values)
  for i = 1, values.n do
    local _, v = debug.getupvalue(fn, i)
    if not rawequal(v, values[i]) then return false end
  end
  return true
end

-- In a worker: the value a library name stands for.
local function resolve(name)
  local m = package.loaded[name[1]] or require(name[1])
  if name[2] == nil then return m end
  return m[name[2]]
end

-- In a worker: the function a description stands for.
function ship.build(desc)
  if desc.lib then return resolve(desc.lib) end
  local fs = {}
  for j, entry in ipairs(desc) do fs[j] = assert(load(entry.code, "=pool", "b")) end
  for j, entry in ipairs(desc) do
    for i, u in ipairs(entry.ups) do
      local v = u[2]
      if u[1] == "env" then v = _G
      elseif u[1] == "fn" then v = fs[v]
      elseif u[1] == "lib" then v = resolve(v) end
      debug.setupvalue(fs[j], i, v)
    end
  end
  return fs[1]
end

return ship
