local helpers = require "tests.helpers"
local par = helpers.par

local error_of, mapping_count = helpers.error_of, helpers.mapping_count

local function pairs_count(d)
  local n = 0
  for _ in pairs(d) do n = n + 1 end
  return n
end

describe("par.dict", function()
  it("stores, reads and removes values of every wire kind, copied in", function()
    local d = par.dict()
    local nested = {1, 2.5, "three", {four = {true, false}}, [10] = math.huge}
    d.a, d[1], d[2.5], d[true], d[false] = nested, "one", -0.0, 0.1, math.mininteger
    assert.are.same(nested, d.a)
    assert.are.same({"one", 0.1, math.mininteger}, {d[1], d[true], d[false]})
    assert.are.equal("float", math.type(d[2.5]))
    assert.are.equal(-math.huge, 1 / d[2.5]) -- the sign of -0.0 travels too
    nested[1] = "changed"
    d.a.x = 1                                      -- a copy: nothing writes through
    assert.are.equal(1, d.a[1])
    assert.is_nil(d.a.x)
    d.a = nil
    assert.is_nil(d.a)
    assert.are.equal(4, #d)
  end)

  it("keys by Lua's rules: 2.0 is key 2, \"2\" is another key", function()
    local d = par.dict()
    d[2.0] = "float two"
    assert.are.equal("float two", d[2])
    d[2] = "two"
    d["2"] = "string two"
    assert.are.equal(2, #d)
    assert.are.equal("two", d[2.0])
    local keys = {}
    for k in pairs(d) do keys[#keys + 1] = math.type(k) or type(k) end
    table.sort(keys)
    assert.are.same({"integer", "string"}, keys)
  end)

  it("keeps method names as keys, reached with get", function()
    local d = par.dict()
    d.get = "stored"
    assert.are.equal("function", type(d.get))
    assert.are.equal("stored", d:get("get"))
  end)

  it("get returns the default for a missing key", function()
    local d = par.dict()
    d.x = false
    assert.are.same({false, 7, nil}, {d:get("x", 7), d:get("y", 7), d:get("y")})
  end)

  it("incr adds atomically, a missing key counting as 0; ints stay ints", function()
    local d = par.dict()
    assert.are.equal(1, d:incr("n"))
    assert.are.equal(6, d:incr("n", 5))
    assert.are.equal("integer", math.type(d.n))
    assert.are.equal(0.5, d:incr("f", 0.5))
    assert.are.equal("float", math.type(d:incr("n", 1.0)))
    d.s = "text"
    assert.matches("incr of a string value", tostring(error_of(d.incr, d, "s")))
    assert.are.equal("text", d.s)
  end)

  it("update stores fn(old) and returns it; an error leaves the value and the lock", function()
    local d = par.dict()
    assert.are.equal(1, d:update("n", function(old) return (old or 0) + 1 end))
    assert.are.same({1, 2}, d:update("t", function(old) assert(old == nil); return {1, 2} end))
    assert.matches("inside", tostring(error_of(d.update, d, "n", function() error("inside") end)))
    assert.are.equal(1, d.n)
    assert.are.equal(2, par.spawn(function() return d:incr("n") end):join())
    assert.matches("used inside its own update function",
                   tostring(error_of(d.update, d, "n", function() return d.n end)))
    assert.matches("cannot send a function",
                   tostring(error_of(d.update, d, "n", function() return print end)))
    assert.are.equal(2, d.n)
    assert.is_nil(d:update("n", function() return nil end))
    assert.is_nil(d.n)
  end)

  it("setdefault stores only when absent and returns what is stored", function()
    local d = par.dict()
    assert.are.same({1}, d:setdefault("k", {1}))
    assert.are.same({1}, d:setdefault("k", {2}))
  end)

  it("cas replaces only an equal value (wire equality); nil means absent", function()
    local d = par.dict()
    assert.is_true(d:cas("k", nil, 1))
    assert.is_false(d:cas("k", nil, 2))
    assert.is_false(d:cas("k", 1.0, 2)) -- 1.0 and 1 differ on the wire
    assert.is_true(d:cas("k", 1, {x = 1}))
    assert.is_true(d:cas("k", {x = 1}, "s"))
    assert.are.equal("s", d.k)
    assert.is_true(d:cas("k", "s", nil))
    assert.are.equal(0, #d)
  end)

  it("pop removes and returns, or returns the default", function()
    local d = par.dict()
    d.k = {1}
    assert.are.same({1}, d:pop("k"))
    assert.are.same({nil, "none"}, {d:pop("k"), d:pop("k", "none")})
    assert.are.equal(0, #d)
  end)

  it("is empty when new: #d is 0, snapshot is {} and pairs yields nothing", function()
    local d = par.dict()
    assert.are.equal(0, #d)
    assert.are.same({}, d:snapshot())
    assert.are.equal(0, pairs_count(d))
  end)

  it("pairs, snapshot and #d agree; clear empties it", function()
    local d = par.dict()
    for i = 1, 1000 do d[i] = i * i end
    for i = 1, 1000, 2 do d[i] = nil end
    local snap = d:snapshot()
    assert.are.equal(500, #d)
    assert.are.equal(500, pairs_count(d))
    local n = 0
    for k, v in pairs(snap) do
      n = n + 1
      assert.are.equal(k * k, v)
      assert.are.equal(0, k % 2)
    end
    assert.are.equal(500, n)
    d:clear()
    assert.are.equal(0, #d)
    assert.are.same({}, d:snapshot())
    d.again = 1
    assert.are.same({again = 1}, d:snapshot())
  end)

  it("reads back whole while finalizers that use it run during a snapshot or a get", function()
    local d, l = par.dict(), par.list()
    for i = 1, 2000 do
      d[i] = {i, tostring(i)}
      l:append({i, tostring(i)})
    end
    d.probe = string.rep("x", 5000)
    local uses_both = {__gc = function() local _ = d:get("probe"), l[1] end}
    local function garbage() for _ = 1, 3000 do setmetatable({}, uses_both) end end
    local want = {}
    for i = 1, 2000 do want[i] = {i, tostring(i)} end
    collectgarbage("generational") -- finalizers then run in the steps taken while decoding
    for _ = 1, 10 do
      garbage()
      local snap = d:snapshot()
      snap.probe = nil
      assert.are.same(want, snap)
      garbage()
      assert.are.same(want, l:snapshot())
      garbage()
      assert.are.same(want[7], d:get(7))
    end
    collectgarbage("incremental")
  end)

  it("is written by par.map workers and read by the parent", function()
    local d = par.dict()
    par.map(function(i)
      d[i] = {square = i * i}
      d:incr("total", i)
    end, helpers.range(100), {workers = 2})
    assert.are.equal(101, #d)
    assert.are.equal(5050, d.total)
    for i = 1, 100 do assert.are.equal(i * i, d[i].square) end
  end)

  it("is written by nested workers and spawned processes", function()
    local d = par.dict()
    par.map(function(i)
      par.spawn(function() d["spawned" .. i] = true end):join()
      par.map(function(j) d[i * 10 + j] = j end, {1, 2}, {workers = 2})
    end, {1, 2}, {workers = 2})
    assert.are.same({spawned1 = true, spawned2 = true, [11] = 1, [12] = 2, [21] = 1, [22] = 2},
                    d:snapshot())
  end)

  it("gets the exact total of 2 workers doing 10^5 incr each", function()
    local d = par.dict()
    par.map(function()
      for _ = 1, 100000 do d:incr("hits") end
    end, {1, 2}, {workers = 2})
    assert.are.equal(200000, d.hits)
  end)

  it("loses no update when 2 workers update one key", function()
    local d = par.dict()
    par.map(function(w)
      for i = 1, 2000 do
        d:update("seen", function(old)
          old = old or {}
          old[#old + 1] = w * 10000 + i
          return old
        end)
      end
    end, {1, 2}, {workers = 2})
    assert.are.equal(4000, #d.seen)
  end)

  it("stays whole when writers are SIGKILLed at random moments", function()
    local d, l = par.dict({max = 1 << 26}), par.list({max = 1 << 26})
    local done_incr, done_append = par.value(0), par.value(0)
    local texts = {}
    for j = 1, 8 do texts[j] = ("x"):rep(j * 20000) end
    local function text_of(i) return texts[i % 8 + 1] end
    for round = 1, 40 do
      local p = par.spawn(function()
        local i = 0
        while true do
          i = i + 1
          d["k" .. i % 300] = {i = i, s = text_of(i)}
          if i % 3 == 0 then d["k" .. (i * 7) % 300] = nil end
          done_incr:set(d:incr("count"))
          done_append:set(l:append({i = i, s = text_of(i)}))
          if i % 2 == 0 then l:pop() end
        end
      end)
      par.sleep(0.002 + math.random() * 0.02)
      p:kill("KILL")
      assert.are.equal("crash", error_of(p.join, p).kind)
      local n = 0
      for k, v in pairs(d) do
        n = n + 1
        if k ~= "count" then assert.are.equal(#text_of(v.i), #v.s) end
      end
      assert.are.equal(#d, n, "round " .. round)
      assert.is_true((d.count or 0) >= done_incr:get(), "round " .. round)
      for _, v in ipairs(l) do assert.are.equal(#text_of(v.i), #v.s) end
      assert.are.equal(#l, #l:snapshot())
      assert.is_true(#l >= done_append:get() - 1) -- the last append may have been popped
    end
  end)

  it("is usable at once after a process was SIGKILLed holding its lock", function()
    local d, inside = par.dict(), par.event()
    d.k = "before"
    local p = par.spawn(function()
      d:update("k", function()
        inside:set()
        par.sleep(60)
        return "never"
      end)
    end)
    inside:wait()
    p:kill("KILL")
    error_of(p.join, p)
    assert.are.equal("before", d.k)
    d.k = "after"
    assert.are.equal("after", d.k)
  end)

  it("raises 'par.dict: full (' when full and keeps what was stored", function()
    local d = par.dict({max = 65536})
    local stored = 0
    local err = error_of(function()
      for i = 1, 100000 do
        d[i] = ("v"):rep(100)
        stored = i
      end
    end)
    assert.matches("^par.dict: full %(", tostring(err))
    assert.is_true(stored > 100)
    assert.are.equal(stored, #d)
    for i = 1, stored do assert.are.equal(100, #d[i]) end
    for i = 1, 50 do d[i] = nil end
    d.room = "again"
    assert.are.equal("again", d.room)
  end)

  it("refuses bad arguments before changing anything", function()
    local d = par.dict()
    d.k = 1
    assert.matches("bad argument #2 to '%w+' %(string, number or boolean key expected, got table",
                   tostring(error_of(function() d[{}] = 1 end)))
    assert.matches("bad argument #2 to '%w+' %(string, number or boolean key expected, got nil",
                   tostring(error_of(function() return d[nil] end)))
    assert.matches("key is NaN", tostring(error_of(function() d[0 / 0] = 1 end)))
    assert.matches("bad argument #3 .*cannot send a function", tostring(error_of(function()
      d.k = {f = print}
    end)))
    assert.matches("bad argument #2 to 'incr'", tostring(error_of(function() d:incr("k", "1") end)))
    assert.matches("bad argument #2 to 'update'", tostring(error_of(function() d:update("k", 1) end)))
    assert.matches("bad argument #1 to '[%w.]*dict'", tostring(error_of(par.dict, {max = 10})))
    assert.matches("bad argument #1 to 'get' %(par.Dict expected", tostring(error_of(function() d.get({}, 1) end)))
    assert.matches("cannot send a userdata", tostring(error_of(par.encode, d)))
    assert.are.same({k = 1}, d:snapshot())
  end)

  it("is closed by a to-be-closed variable", function()
    local kept
    do
      local d <close> = par.dict()
      kept = d
    end
    assert.matches("used after it was closed", tostring(error_of(function() return kept.x end)))
  end)

  it("leaves mappings and descriptors flat when 1,000 are made and dropped", function()
    local function churn()
      for i = 1, 1000 do
        local d, l = par.dict(), par.list()
        d[i] = i
        l:append(i)
      end
      helpers.settle()
    end
    churn()
    local maps, fds = mapping_count(), helpers.fd_count()
    churn()
    -- within a few: the allocator (ASan's above all) maps and unmaps its own
    assert.is_true(math.abs(mapping_count() - maps) < 20, mapping_count() - maps)
    assert.are.equal(fds, helpers.fd_count())
  end)
end)

describe("par.list", function()
  it("appends, extends, indexes, sets, pops and iterates", function()
    local l = par.list()
    assert.are.equal(1, l:append("a"))
    assert.are.equal(2, l:append({b = {1}}))
    l:extend({3, 4.5, true})
    assert.are.equal(5, #l)
    assert.are.same({"a", {b = {1}}, 3, 4.5, true}, l:snapshot())
    assert.are.same({1}, l[2].b)
    assert.is_nil(l[6])
    assert.is_nil(l[0])
    l[1] = "A"
    l[2.0] = "B"
    local seen = {}
    for i, v in ipairs(l) do seen[i] = v end
    assert.are.same({"A", "B", 3, 4.5, true}, seen)
    assert.is_true(l:pop())
    assert.are.equal(4, #l)
    l:clear()
    assert.is_nil(l:pop())
    assert.are.equal(0, #l)
  end)

  it("is appended to by workers, exactly", function()
    local l = par.list()
    par.map(function(w)
      for i = 1, 5000 do l:append(w * 100000 + i) end
    end, {1, 2}, {workers = 2})
    assert.are.equal(10000, #l)
    local seen = {}
    for _, v in ipairs(l:snapshot()) do seen[v] = true end
    for w = 1, 2 do
      for i = 1, 5000 do assert.is_true(seen[w * 100000 + i]) end
    end
  end)

  it("refuses an index outside 1 .. #l and values that cannot travel", function()
    local l = par.list()
    l:append(1)
    assert.matches("bad argument #2 to '%w+' %(index 2 out of range 1 .. 1%)",
                   tostring(error_of(function() l[2] = 1 end)))
    assert.matches("bad argument #2", tostring(error_of(function() l[0] = 1 end)))
    assert.matches("bad argument #2", tostring(error_of(function() l[1.5] = 1 end)))
    assert.matches("bad argument #1 to 'append'", tostring(error_of(function() l:append(print) end)))
    assert.matches("bad argument #1 to 'extend'", tostring(error_of(function() l:extend(1) end)))
    assert.matches("cannot send a function", tostring(error_of(l.extend, l, {1, 2, print})))
    assert.are.same({1}, l:snapshot())
  end)

  it("raises 'par.list: full (' when full and keeps what was stored", function()
    local l = par.list({max = 65536})
    local err = error_of(function()
      for _ = 1, 100000 do l:append(("v"):rep(100)) end
    end)
    assert.matches("^par.list: full %(", tostring(err))
    local n = #l
    assert.is_true(n > 100)
    assert.matches("^par.list: full %(", tostring(error_of(l.extend, l, {1, ("v"):rep(60000)})))
    assert.are.equal(n, #l)
    for _, v in ipairs(l) do assert.are.equal(100, #v) end
  end)
end)
