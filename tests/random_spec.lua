local helpers = require "tests.helpers"
local par = helpers.par

-- A few draws of math.random in whatever process runs it.
local function draws()
  return {math.random(), math.random(1 << 40), math.random(1, 6)}
end

local function list_of(n)
  local list = {}
  for i = 1, n do list[i] = i end
  return list
end

describe("a process par forks", function()
  -- Item x of two, on two workers: each waits for the other's word, so
  -- each runs in a worker of its own, and returns what it drew first.
  local function two_workers_draw()
    local mine = {par.channel(), par.channel()}
    return par.map(function(x)
      local drawn = draws()
      mine[x]:put(par.pid())
      local other = mine[3 - x]:get(30)
      assert(other and other ~= par.pid(), "the other item did not run in another worker")
      return drawn
    end, {1, 2}, {workers = 2, chunk = 1})
  end

  it("draws numbers of its own in each par.map worker, unlike its parent's next ones", function()
    local got = two_workers_draw()
    local parent_next = draws() -- what a worker holding the parent's state would have drawn
    assert.are_not.same(got[1], got[2])
    assert.are_not.same(parent_next, got[1])
    assert.are_not.same(parent_next, got[2])
  end)

  it("draws numbers of its own in each par.queue and par.imap worker", function()
    local gate = {par.channel(), par.channel()}
    local function meet(x)
      local drawn = draws()
      gate[x]:put(true)
      assert(gate[3 - x]:get(30), "the other item did not run in another worker")
      return drawn
    end
    local q = par.queue(meet, {workers = 2})
    q:push(1); q:push(2); q:close()
    local from_queue = {}
    for id, drawn in q:results() do from_queue[id] = drawn end
    local from_imap = {}
    for i, drawn in par.imap(meet, {1, 2}, {workers = 2}) do from_imap[i] = drawn end
    local parent_next = draws()
    for _, got in ipairs({from_queue, from_imap}) do
      assert.are_not.same(got[1], got[2])
      assert.are_not.same(parent_next, got[1])
      assert.are_not.same(parent_next, got[2])
    end
    assert.are_not.same(from_queue[1], from_imap[1])
  end)

  it("draws numbers of its own in each par.spawn child, unlike its parent's next ones", function()
    local a, b = par.spawn(draws), par.spawn(draws)
    local from_a, from_b = a:join(), b:join()
    local parent_next = draws()
    assert.are_not.same(from_a, from_b)
    assert.are_not.same(parent_next, from_a)
    assert.are_not.same(parent_next, from_b)
  end)

  it("draws numbers of its own in nested children, unlike the worker that forked them", function()
    local got = par.spawn(function()
      local a, b = par.spawn(draws), par.spawn(draws)
      return a:join(), b:join(), draws()
    end)
    local from_a, from_b, from_child = got:join()
    assert.are_not.same(from_a, from_b)
    assert.are_not.same(from_child, from_a)
    assert.are_not.same(from_child, from_b)
  end)

  it("draws numbers in a replacement worker unlike those of the worker that crashed", function()
    local marker = os.tmpname()
    local results, errors = par.map(function(x)
      local drawn = draws()
      if x == 1 then -- its result would be lost with it: it leaves its draws in a file
        helpers.write_file(marker, ("return {%.17g, %d, %d}"):format(drawn[1], drawn[2], drawn[3]))
        os.exit(3)
      end
      return drawn
    end, {1, 2}, {workers = 1, chunk = 1, on_error = "collect"})
    local crashed = assert(load(helpers.read_file(marker)))()
    os.remove(marker)
    assert.are.equal("crash", errors[1].kind)
    assert.are_not.same(crashed, results[2]) -- item 2 ran in the replacement, first thing
    assert.are_not.same(draws(), results[2])
  end)

  it("calls a randomseed the script put in math in each child instead", function()
    local own = math.randomseed
    local calls = par.channel()
    math.randomseed = function(...)
      calls:put(par.pid())
      return own(...)
    end
    local ok, got = pcall(two_workers_draw)
    math.randomseed = own
    assert.is_true(ok, tostring(got))
    assert.are_not.same(got[1], got[2])
    assert.are_not.same(draws(), got[1])
    local seeded = {}
    for _ = 1, 2 do seeded[#seeded + 1] = calls:get(0) end
    assert.are.equal(2, #seeded)
    assert.are_not.equal(par.pid(), seeded[1])
  end)

  it("still forks when the script removed the math library", function()
    local status, out, err = helpers.run_lua([[
      local par = require "par"
      math = nil
      package.loaded.math = nil
      local r = par.map(function(x) return x + 1 end, {1, 2, 3}, {workers = 2})
      local p = par.spawn(function() return "spawned" end)
      print(r[1], r[2], r[3], p:join())
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("2\t3\t4\tspawned\n", out)
  end)
end)

describe("opts.seed", function()
  local items = list_of(24)
  local function item_draws(x) return {x, draws()} end
  local reference -- par.map's results with seed 42, on one worker, range by range

  before_each(function()
    reference = reference or par.map(item_draws, items, {workers = 1, chunk = 1, seed = 42})
  end)

  it("makes par.map's results the same whatever the worker count and chunk size", function()
    for _, workers in ipairs({1, 2, 4}) do
      for _, chunk in ipairs({1, 3}) do
        assert.are.same(reference, par.map(item_draws, items, {workers = workers, chunk = chunk, seed = 42}),
                        ("workers = %d, chunk = %d"):format(workers, chunk))
      end
    end
    assert.are.same(reference, par.map(item_draws, items, {seed = 42}))
  end)

  it("makes them the same from run to run, whatever the parent's own math.random state", function()
    math.randomseed(1)
    local first = par.map(item_draws, items, {workers = 2, seed = 42})
    math.randomseed(2)
    assert.are.same(first, par.map(item_draws, items, {workers = 3, seed = 42}))
    assert.are.same(reference, first)
  end)

  it("seeds each item from the seed and its index: items differ, and so do seeds", function()
    assert.are_not.same(reference[1][2], reference[2][2])
    local other = par.map(item_draws, items, {workers = 2, seed = 43})
    for i = 1, #items do assert.are_not.same(reference[i][2], other[i][2]) end
  end)

  it("gives par.imap, par.queue and pipeline stages par.map's results for the same ids", function()
    local from_imap = {}
    for i, r in par.imap(item_draws, items, {workers = 3, seed = 42}) do from_imap[i] = r end
    assert.are.same(reference, from_imap)

    local n = 0
    local from_source = {}
    for i, r in par.imap(item_draws, function() if n < #items then n = n + 1; return n end end,
                         {workers = 2, ordered = false, seed = 42}) do
      from_source[i] = r
    end
    assert.are.same(reference, from_source)

    local q = par.queue(item_draws, {workers = 2, seed = 42})
    for _, x in ipairs(items) do q:push(x) end
    q:close()
    local from_queue = {}
    for id, r in q:results() do from_queue[id] = r end
    assert.are.same(reference, from_queue)

    local from_pipeline = {}
    for r in par.pipeline(items):map(item_draws, {workers = 2, seed = 42}):run() do
      from_pipeline[#from_pipeline + 1] = r
    end
    assert.are.same(reference, from_pipeline)
  end)

  it("gives a retried item the numbers it gets in a clean run", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    -- item 5 raises and item 9 kills its worker, each on its first attempt only
    local function first_time(x)
      local marker = dir .. "/" .. x
      if helpers.read_file(marker) then return false end
      helpers.write_file(marker, "")
      return true
    end
    local function flaky(x)
      local r = item_draws(x)
      if x == 5 and first_time(x) then error("first attempt") end
      if x == 9 and first_time(x) then os.exit(3) end
      return r
    end
    assert.are.same(reference, par.map(flaky, items, {workers = 2, chunk = 3, retries = 1, seed = 42}))
    assert.is_truthy(helpers.read_file(dir .. "/5") and helpers.read_file(dir .. "/9"), "no item failed")
    os.execute("rm -f " .. dir .. "/*")
    local q = par.queue(flaky, {workers = 2, retries = 1, seed = 42})
    for _, x in ipairs(items) do q:push(x) end
    q:close()
    local from_queue = {}
    for id, r in q:results() do from_queue[id] = r end
    assert.are.same(reference, from_queue)
    assert.is_truthy(helpers.read_file(dir .. "/5") and helpers.read_file(dir .. "/9"), "no item failed")
    os.execute("rm -rf " .. dir)
  end)

  it("must be an integer", function()
    local function misuse(fn, seed) return select(2, pcall(fn, seed)) end
    local map = function(seed) return par.map(item_draws, items, {seed = seed}) end
    assert.matches("bad argument #3 to 'map' %(option 'seed' must be an integer %(got 1.5%)%)", misuse(map, 1.5))
    assert.matches("bad argument #3 to 'map' %(option 'seed' must be an integer %(got 42%)%)", misuse(map, "42"))
    assert.matches("bad argument #2 to 'queue' %(option 'seed' must be an integer %(got true%)%)",
                   misuse(function(seed) return par.queue(item_draws, {seed = seed}) end, true))
    assert.matches("bad argument #3 to 'imap' %(option 'seed' must be an integer",
                   misuse(function(seed) return par.imap(item_draws, items, {seed = seed}) end, 0.5))
    assert.matches("par.pipeline: stage 1: option 'seed' must be an integer", misuse(function(seed)
      for _ in par.pipeline(items):map(item_draws, {seed = seed}):run() do end
    end, {}))
  end)
end)
