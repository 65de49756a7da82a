local helpers = require "tests.helpers"
local par = helpers.par

local function double(x) return x * 2 end

describe("par.queue", function()
  it("runs pushed items and gives ids in push order", function()
    local q = par.queue(double, {workers = 2})
    assert.are.equal(1, q:push(10))
    assert.are.equal(2, q:push(20))
    q:close()
    local got = {}
    for id, result in q:results() do got[id] = result end
    assert.are.same({20, 40}, got)
  end)

  it("moves 100,000 items through capacity 4 without deadlock, every id once", function()
    local q = par.queue(double, {workers = 2, capacity = 4})
    local seen, count = {}, 0
    local function take(id, result)
      assert.is_nil(seen[id])
      assert.are.equal(id * 2, result)
      seen[id] = true
      count = count + 1
    end
    for i = 1, 100000 do
      q:push(i)
      if q:pending() > 64 then take(q:pop()) end
    end
    q:close()
    for id, result in q:results() do take(id, result) end
    assert.are.equal(100000, count)
  end)

  it("pops in completion order by default", function()
    local q = par.queue(function(s) par.sleep(s); return s end, {workers = 2})
    q:push(0.4)
    q:push(0.01)
    local first = q:pop()
    assert.are.equal(2, first)
    assert.are.equal(1, (q:pop()))
    q:close()
  end)

  it("pops in push order with ordered = true", function()
    local q = par.queue(function(s) par.sleep(s); return s end, {workers = 2, ordered = true})
    q:push(0.3)
    q:push(0.01)
    q:push(0.01)
    q:close()
    local ids = {}
    for id in q:results() do ids[#ids + 1] = id end
    assert.are.same({1, 2, 3}, ids)
  end)

  it("returns nil, \"timeout\" when pop's timeout expires", function()
    local q = par.queue(function(s) par.sleep(s); return s end, {workers = 1})
    q:push(0.5)
    local id, why = q:pop(0.05)
    assert.is_nil(id)
    assert.are.equal("timeout", why)
    assert.are.equal(1, (q:pop()))
    q:close()
  end)

  it("takes in all that the workers have sent before pop(0) says \"timeout\"", function()
    -- a failed item comes back as two messages, its error and its results;
    -- the worker sends both before it waits for its next item
    local started = par.channel()
    local q = par.queue(function(x) started:put(par.pid()); error("fails " .. x) end,
                        {workers = 1, on_error = "collect"})
    q:push(1)
    local worker = started:get(10)
    assert.is_true(helpers.wait_until_asleep(worker), "the worker never waited for more")
    local id, result, err = q:pop(0)
    assert.are.equal(1, id)
    assert.is_nil(result)
    assert.matches("fails 1", err.message)
    assert.are.same({nil, "timeout"}, {q:pop(0)})
    q:close()
  end)

  it("returns nil after close once drained, and close is idempotent", function()
    local q = par.queue(double)
    q:push(1)
    q:close()
    q:close()
    assert.are.equal(1, (q:pop()))
    assert.is_nil(q:pop())
    assert.is_nil(q:pop())
  end)

  it("counts pushed items not yet popped", function()
    local q = par.queue(double, {workers = 1})
    assert.are.equal(0, q:pending())
    q:push(1); q:push(2)
    assert.are.equal(2, q:pending())
    q:pop()
    assert.are.equal(1, q:pending())
    q:close()
  end)

  it("raises a failed item's error from pop and goes on", function()
    local q = par.queue(function(x) if x == 2 then error("no twos") end return x end, {ordered = true})
    for i = 1, 3 do q:push(i) end
    q:close()
    assert.are.equal(1, (q:pop()))
    local ok, err = pcall(q.pop, q)
    assert.is_false(ok)
    assert.are.equal(2, err.index)
    assert.are.equal("error", err.kind)
    assert.are.equal("par.queue", err.fn)
    assert.matches("no twos", err.message)
    assert.matches("stack traceback", err.traceback)
    assert.are.equal(3, (q:pop()))
  end)

  it("returns id, nil, err from pop with on_error = \"collect\"", function()
    local q = par.queue(function(x) if x == 2 then error("no twos") end return x end,
                        {ordered = true, on_error = "collect"})
    for i = 1, 3 do q:push(i) end
    q:close()
    local rows = {}
    for id, result, err in q:results() do rows[id] = {result, err and err.index} end
    assert.are.same({{1}, {nil, 2}, {3}}, rows)
  end)

  it("refuses to push what cannot be sent, in the caller", function()
    local q = par.queue(double)
    local ok, err = pcall(function() q:push({f = print}) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'push' %(cannot send a function %(at item%.f%)%)", err)
    local t = {}; t.t = t
    ok, err = pcall(function() q:push(t) end)
    assert.matches("cycle", err)
    q:close()
  end)

  it("refuses pushes after close", function()
    local q = par.queue(double)
    q:close()
    assert.has_error(function() q:push(1) end, "par.queue: push on a closed queue")
  end)

  it("carries items exactly", function()
    local q = par.queue(function(v) return {v, math.type(v[1]), math.type(v[2])} end, {ordered = true})
    q:push({2, 2.0, "a\0b", [true] = "t"})
    q:close()
    local _, r = q:pop()
    assert.are.same({{2, 2.0, "a\0b", [true] = "t"}, "integer", "float"}, r)
  end)

  it("sees the state as it was when the queue was made", function()
    local base = 100
    local q = par.queue(function(x) return x + base end)
    base = 0
    q:push(1)
    q:close()
    assert.are.same({1, 101}, {q:pop()})
  end)

  it("runs init once in each worker", function()
    local q = par.queue(function() return _G.par_queue_inits end,
                        {workers = 2, init = function() _G.par_queue_inits = (_G.par_queue_inits or 0) + 1 end})
    for i = 1, 6 do q:push(i) end
    q:close()
    for _, r in q:results() do assert.are.equal(1, r) end
  end)

  it("checks its options", function()
    assert.matches("option 'capacity' must be an integer >= 1", select(2, pcall(par.queue, double, {capacity = 0})))
    assert.matches("option 'ordered' must be a boolean", select(2, pcall(par.queue, double, {ordered = 1})))
    assert.matches("unknown option 'chunk'", select(2, pcall(par.queue, double, {chunk = 2})))
    assert.matches("function expected", select(2, pcall(par.queue, 3)))
  end)

  it("accepts a capacity of any size", function()
    local q = par.queue(double, {workers = 1, capacity = 2^40})
    assert.are.equal(1 << 40, q:capacity())
    q:push(21)
    assert.are.same({1, 42}, {q:pop()})
    q:close()
  end)

  it("ends its workers once closed and drained, with a failed item among the results", function()
    for _, ordered in ipairs({true, false}) do
      helpers.settle()
      local before = helpers.child_count()
      local q = par.queue(function(x) if x == 2 then error("two") end return x end,
                          {workers = 1, ordered = ordered, on_error = "collect"})
      q:push(1)
      q:push(2)
      q:close()
      local got = {}
      for id, result, err in q:results() do got[id] = err and err.kind or result end
      assert.are.same({1, "error"}, got)
      assert.are.equal(before, helpers.child_count(), ordered and "ordered" or "unordered")
    end
  end)

  it("leaves no process behind when garbage-collected", function()
    helpers.settle()
    local before = helpers.child_count()
    do
      local q = par.queue(double, {workers = 2})
      q:push(1)
    end
    helpers.settle()
    assert.are.equal(before, helpers.child_count())
  end)

  it("keeps working when a worker collects its copy of the queue", function()
    -- A worker inherits the queue; collecting it there must neither kill
    -- the parent's queue workers nor close descriptors the worker owns.
    local holder = {q = par.queue(function(x) par.sleep(0.1) return x * 2 end, {workers = 1})}
    holder.q:push(5)
    par.map(function(x)
      holder.q = nil
      collectgarbage()
      collectgarbage()
      return x
    end, {1}, {workers = 1})
    local ok, id, result = pcall(holder.q.pop, holder.q)
    assert.is_true(ok, tostring(id))
    assert.are.same({1, 10}, {id, result})
    holder.q:close()
  end)

  it("refuses push, pop and close in a worker, where it is a copy of the parent's", function()
    local q = par.queue(double, {workers = 1})
    local r = par.map(function(x)
      local results = {}
      for _, call in ipairs{function() q:push(x) end, function() q:pop() end, function() q:close() end} do
        local ok, err = pcall(call)
        results[#results + 1] = not ok and err:match("the queue belongs to process %d+") ~= nil
      end
      return results
    end, {1}, {workers = 1})
    assert.are.same({{true, true, true}}, r)
    q:push(3)
    assert.are.same({1, 6}, {q:pop()})
    q:close()
  end)

  it("takes its workers with it when the script ends with the queue open", function()
    local status, out = helpers.run_lua([[
      local par = require "par"
      local q = par.queue(function() return par.pid() end, {workers = 2})
      q:push(1); q:push(2)
      local _, a = q:pop(); local _, b = q:pop()
      io.write(a, " ", b)
    ]])
    assert.are.equal(0, status)
    local pids = {}
    for pid in out:gmatch("%d+") do pids[#pids + 1] = pid end
    assert.are.equal(2, #pids)
    for _, pid in ipairs(pids) do
      local alive = io.open("/proc/" .. pid .. "/status")
      if alive then alive:close() end
      assert.is_nil(alive, "worker " .. pid .. " outlived the script")
    end
  end)
end)

describe("par.imap", function()
  it("yields index and result in source order", function()
    local got = {}
    for i, r in par.imap(double, {5, 6, 7}) do got[#got + 1] = {i, r} end
    assert.are.same({{1, 10}, {2, 12}, {3, 14}}, got)
  end)

  it("yields in completion order with ordered = false", function()
    local order = {}
    for i in par.imap(function(s) par.sleep(s) end, {0.4, 0.01}, {workers = 2, ordered = false}) do
      order[#order + 1] = i
    end
    assert.are.same({2, 1}, order)
  end)

  it("reads an endless iterator lazily and stops at break", function()
    helpers.settle()
    local before = helpers.child_count()
    local n = 0
    local function naturals() n = n + 1; return n end
    local last
    for i, r in par.imap(double, naturals, {workers = 2}) do
      last = r
      if i == 500 then break end
    end
    assert.are.equal(1000, last)
    assert.is_true(n < 600, "read " .. n .. " items ahead")
    assert.are.equal(before, helpers.child_count())
  end)

  it("keeps memory bounded over a long source", function()
    local seen_pending = 0
    local n = 0
    local iter, s, c, q = par.imap(double, function() n = n + 1; if n <= 20000 then return n end end,
                                   {capacity = 8})
    for _ in iter, s, c, q do
      seen_pending = math.max(seen_pending, q:pending())
    end
    assert.is_true(seen_pending <= 8)
  end)

  it("raises an item's error naming par.imap, or collects it", function()
    local ok, err = pcall(function()
      for _ in par.imap(function(x) if x == 2 then error("bad two") end return x end, {1, 2, 3}) do end
    end)
    assert.is_false(ok)
    assert.are.equal("par.imap", err.fn)
    assert.are.equal(2, err.index)
    local errs = {}
    for i, _, e in par.imap(function(x) if x == 2 then error("bad two") end return x end, {1, 2, 3},
                            {on_error = "collect"}) do
      if e then errs[#errs + 1] = i end
    end
    assert.are.same({2}, errs)
  end)

  it("names the source item that cannot be sent by its place in the source", function()
    local n = 0
    local function source()
      n = n + 1
      if n == 10 then return print end
      if n <= 12 then return n end
    end
    local ok, err = pcall(function()
      for _ in par.imap(double, source, {workers = 1, capacity = 2}) do end
    end)
    assert.is_false(ok)
    assert.matches("par.imap: source item 10: cannot send a function", err)
  end)

  it("checks its arguments", function()
    assert.matches("bad argument #2 to 'imap'", select(2, pcall(par.imap, double, 5)))
    assert.matches("bad argument #1 to 'imap'", select(2, pcall(par.imap, 5, {})))
  end)
end)

describe("par.pipeline", function()
  it("streams items through parallel stages in order", function()
    local out = par.pipeline({"a b", "c d e", "f"})
      :map(function(line) local n = 0; for _ in line:gmatch("%a") do n = n + 1 end; return n end, {workers = 2})
      :map(function(n) return n * 10 end, {workers = 1})
      :collect()
    assert.are.same({20, 30, 10}, out)
  end)

  it("reduces in the parent and drops nil results", function()
    local odd_squares = par.pipeline({1, 2, 3, 4, 5})
      :map(function(x) if x % 2 == 1 then return x end end)
      :map(function(x) return x * x end)
      :reduce(function(acc, v) return acc + v end, 0)
    assert.are.equal(1 + 9 + 25, odd_squares)
  end)

  it("names the stage whose options are bad, and leaves no process behind", function()
    helpers.settle()
    local before = helpers.child_count()
    local ok, err = pcall(function()
      return par.pipeline({1, 2}):map(double):map(double, {capacity = 0}):collect()
    end)
    assert.is_false(ok)
    assert.matches("^par.pipeline: stage 2: option 'capacity' must be an integer >= 1", err)
    helpers.settle()
    assert.are.equal(before, helpers.child_count())
  end)

  it("takes an iterator source and stops every stage at break", function()
    helpers.settle()
    local before = helpers.child_count()
    local n = 0
    for v in par.pipeline(function() n = n + 1; return n end):map(double):map(double):run() do
      if v >= 400 then break end
    end
    assert.are.equal(before, helpers.child_count())
  end)
end)
