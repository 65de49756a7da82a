-- Resumable maps (docs/long-runs.md): opts.checkpoint keeps finished
-- results in a file, and a rerun computes only the items not in it.

local helpers = require "tests.helpers"
local par = helpers.par
local read_file, write_file = helpers.read_file, helpers.write_file

local temps = {}

local function tempname()
  local name = os.tmpname()
  temps[#temps + 1] = name
  os.remove(name)
  return name
end

local range = helpers.range

-- fn for the maps below: appends x to the log file (one line, in one write
-- with O_APPEND) when it has computed it, so a test can see what ran.
local function logging(log, fn)
  return function(x)
    local result = fn(x)
    local f = assert(io.open(log, "a"))
    f:write(x, "\n")
    f:close()
    return result
  end
end

-- The items in the log, as a set, and how many lines it has.
local function logged(log)
  local set, lines = {}, 0
  for line in (read_file(log) or ""):gmatch("[^\n]+") do
    set[tonumber(line)] = true
    lines = lines + 1
  end
  return set, lines
end

-- The file's header and its whole records: {first, count} each; a torn end is left out.
local function records(path)
  local text = read_file(path) or ""
  local header, pos = text:match("^([^\n]*)\n()")
  local list = {}
  if not header then return nil, list end
  while true do
    local lo, count, len, at = text:match("^(%d+) (%d+) (%d+) ()", pos)
    if not lo or at + len > #text then break end
    list[#list + 1] = {tonumber(lo), tonumber(count)}
    pos = at + len + 1
  end
  return header, list
end

local function recorded_set(path)
  local set = {}
  for _, r in ipairs(select(2, records(path))) do
    for i = r[1], r[1] + r[2] - 1 do set[i] = true end
  end
  return set
end

local function size_of(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

-- Keeps the header and the first 'keep' records of the file, and returns the items they hold.
local function keep_records(path, keep)
  local text = read_file(path)
  local lines = {}
  for line in text:gmatch("[^\n]*\n") do lines[#lines + 1] = line end
  write_file(path, table.concat(lines, "", 1, keep + 1))
  return recorded_set(path)
end

-- Values whose wire text must come back exactly: floats that look like
-- integers, nested tables with holes, strings with newlines.
local function tricky(x)
  if x % 5 == 0 then return nil end
  return {x, x + 0.0, x / 3, -0.0, {deep = {x, "a\nb\"" .. x}}, [10] = x % 2 == 0, s = ("%d\n"):format(x)}
end

local function same_wire(a, b, n)
  for i = 1, n do assert.are.equal(par.encode({a[i]}), par.encode({b[i]}), "item " .. i) end
end

describe("checkpoint", function()
  teardown(function()
    for _, name in ipairs(temps) do os.remove(name) end
  end)

  it("returns what a straight run returns, exactly, and makes the file", function()
    local path = tempname()
    local list = range(60)
    local straight = par.map(tricky, list, {workers = 3})
    local checked = par.map(tricky, list, {workers = 3, checkpoint = path})
    same_wire(straight, checked, 60)
    local header, list_of_records = records(path)
    assert.truthy(header:find("^parlua%-checkpoint 1 60 %x+$"))
    assert.are.equal(60, size_of(recorded_set(path))) -- every item, nil results too
    assert.is_true(#list_of_records >= 1)
    local again = par.map(function() error("nothing should run") end, list, {checkpoint = path})
    same_wire(straight, again, 60)
  end)

  it("on a rerun computes only the items not in the file", function()
    local path, log = tempname(), tempname()
    local list = range(50)
    local straight = par.map(tricky, list)
    par.map(tricky, list, {workers = 2, chunk = 3, checkpoint = path})
    local kept = keep_records(path, 5)
    assert.are.equal(15, size_of(kept))
    local resumed = par.map(logging(log, tricky), list, {workers = 2, checkpoint = path})
    same_wire(straight, resumed, 50)
    local ran, lines = logged(log)
    assert.are.equal(35, lines)
    for i = 1, 50 do assert.are.equal(not kept[i], ran[i] == true, "item " .. i) end
    assert.are.equal(50, size_of(recorded_set(path)))
  end)

  it("ignores a torn last record and runs its items again", function()
    local path, log = tempname(), tempname()
    local list = range(20)
    par.map(function(x) return x * 2 end, list, {workers = 2, chunk = 1, checkpoint = path})
    local kept = keep_records(path, 12)
    local f = assert(io.open(path, "a"))
    f:write("20 1 4 [4") -- the last write, cut short by a kill
    f:close()
    local r = par.map(logging(log, function(x) return x * 2 end), list, {workers = 2, checkpoint = path})
    for i = 1, 20 do assert.are.equal(2 * i, r[i]) end
    local ran, lines = logged(log)
    assert.are.equal(8, lines)
    for i = 1, 20 do assert.are.equal(not kept[i], ran[i] == true) end
    local _, whole = records(path)
    assert.are.equal(20, size_of(recorded_set(path)))
    assert.are.equal(read_file(path):sub(-1), "\n") -- the torn bytes are gone
    assert.is_true(#whole >= 13)
  end)

  it("starts afresh from a header cut short", function()
    local path = tempname()
    par.map(function(x) return x end, range(3), {checkpoint = path})
    write_file(path, read_file(path):sub(1, 10))
    assert.are.same({1, 2, 3}, par.map(function(x) return x end, range(3), {checkpoint = path}))
  end)

  it("refuses a file made for another list, naming it", function()
    local path = tempname()
    par.map(function(x) return x end, {1, 2, 3}, {checkpoint = path})
    local before = read_file(path)
    local ok, err = pcall(par.map, function(x) return x end, {1, 2, 3, 4}, {checkpoint = path})
    assert.is_false(ok)
    assert.are.equal("checkpoint", err.kind)
    assert.are.equal("par.map", err.fn)
    assert.truthy(tostring(err):find("file '" .. path .. "' was made for a list of 3 items, not 4", 1, true))
    ok, err = pcall(par.map, function(x) return x end, {1, 2, "3"}, {checkpoint = path})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("file '" .. path .. "' was made for another list of 3 items", 1, true))
    assert.are.equal(before, read_file(path))
  end)

  it("refuses a file that is not a checkpoint, and leaves it alone", function()
    local path = tempname()
    write_file(path, "precious data\n")
    local ok, err = pcall(par.map, function(x) return x end, {1}, {checkpoint = path})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("file '" .. path .. "' is not a checkpoint", 1, true))
    assert.are.equal("precious data\n", read_file(path))
  end)

  it("closes a file it refuses at once, without waiting for a collection", function()
    local path = tempname()
    write_file(path, "precious data\n")
    collectgarbage()
    local before = helpers.fd_count()
    for _ = 1, 5 do pcall(par.map, function(x) return x end, {1}, {checkpoint = path}) end
    assert.are.equal(before, helpers.fd_count())
  end)

  it("leaves no refused file behind for a forked process to close", function()
    local refused = tempname()
    write_file(refused, "precious data\n")
    collectgarbage("stop") -- the refused maps' garbage lives on into the processes below
    for _ = 1, 5 do pcall(par.map, function(x) return x end, {1}, {checkpoint = refused}) end
    local child = par.spawn(function()
      -- the workers' pipes take the lowest free descriptors; what they collect must not close them
      return par.map(function(x)
        collectgarbage("restart")
        collectgarbage()
        return x
      end, range(8), {workers = 2, chunk = 1})
    end)
    collectgarbage("restart")
    assert.are.same(range(8), child:join())
  end)

  it("refuses a damaged record in the middle", function()
    local path = tempname()
    par.map(function(x) return x end, range(4), {chunk = 1, workers = 1, checkpoint = path})
    local text = read_file(path)
    local header_end = text:find("\n")
    write_file(path, text:sub(1, header_end) .. "1 1 3 [x]\n" .. text:sub(header_end + 1))
    local ok, err = pcall(par.map, function(x) return x end, range(4), {checkpoint = path})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("is damaged at byte " .. header_end, 1, true))
  end)

  it("keeps no failed item with on_error = collect: a rerun runs them again", function()
    local path, log = tempname(), tempname()
    local broken = true
    local function fn(x)
      if broken and x % 4 == 0 then error("not yet") end
      return x * 10
    end
    local r, errs = par.map(fn, range(12), {on_error = "collect", workers = 2, checkpoint = path})
    assert.are.equal("error", errs[4].kind)
    assert.is_nil(r[8])
    broken = false
    r, errs = par.map(logging(log, fn), range(12), {on_error = "collect", checkpoint = path})
    assert.is_nil(errs)
    for i = 1, 12 do assert.are.equal(10 * i, r[i]) end
    assert.are.same({[4] = true, [8] = true, [12] = true}, (logged(log)))
  end)

  it("keeps the results that came before an error raised", function()
    local path, log = tempname(), tempname()
    local ok = pcall(par.map, function(x) if x == 6 then error("stop") end return x end, range(6),
                     {workers = 1, chunk = 1, checkpoint = path})
    assert.is_false(ok)
    local r = par.map(logging(log, function(x) return x end), range(6), {checkpoint = path})
    assert.are.same(range(6), r)
    assert.are.same({[6] = true}, (logged(log)))
  end)

  it("loses at most the items in flight when the parent is SIGKILLed", function()
    local path, log1, log2 = tempname(), tempname(), tempname()
    local n, workers, chunk = 100, 2, 1
    local list = range(n)
    local gate = true -- in the first run items from 80 on never end: it cannot finish before the kill
    local function fn(x)
      if gate and x >= 80 then par.sleep(3600) end
      par.sleep(0.005)
      return {x, x / 7}
    end
    local child = par.spawn(function()
      par.map(logging(log1, fn), list, {workers = workers, chunk = chunk, checkpoint = path})
    end)
    math.randomseed(os.time())
    local kill_after = math.random(1, 40) -- records
    while #select(2, records(path)) < kill_after and child:running() do par.sleep(0.002) end
    assert.is_true(child:running(), "the map ended before it was killed")
    child:kill("KILL")
    local ok, err = pcall(child.join, child)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("killed by SIGKILL", 1, true))
    local recorded = recorded_set(path)
    gate = false
    local r = par.map(logging(log2, fn), list, {workers = workers, chunk = chunk, checkpoint = path})
    for i = 1, n do assert.are.same({i, i / 7}, r[i]) end
    local first, again = logged(log1), logged(log2)
    local recomputed = 0
    for i = 1, n do
      assert.are.equal(not recorded[i], again[i] == true, "item " .. i)
      if first[i] and again[i] then recomputed = recomputed + 1 end
    end
    assert.is_true(recomputed <= workers * 8 * chunk, recomputed .. " recomputed") -- 8 ranges queued each
  end)

  it("takes only a file name, and items that can be sent", function()
    local ok, err = pcall(par.map, print, {1}, {checkpoint = true})
    assert.is_false(ok)
    assert.truthy(err:find("option 'checkpoint' must be a file name (got boolean)", 1, true))
    ok, err = pcall(par.map, print, {1, print}, {checkpoint = tempname()})
    assert.is_false(ok)
    assert.truthy(err:find("option 'checkpoint' needs items that can be sent: cannot send a function (at list[2])",
                           1, true))
  end)
end)
