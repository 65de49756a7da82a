local helpers = require "tests.helpers"
local par = helpers.par

-- Many calls in one process: nothing may pile up in the parent. Descriptors
-- and children must end where they started; memory must stay flat.
--
-- How memory is measured: VmRSS (resident set, KiB) of this process from
-- /proc/self/status, each time right after two full garbage collections, so
-- only memory the process still holds counts, not garbage waiting to be
-- collected. The first reading is taken after a warm-up (the first 10% of
-- the work), once the allocator, Lua's string table and the tables par
-- keeps have reached their working size; the second at the end. The growth
-- between them must stay under 4 MiB: a leak of even a few hundred bytes a
-- call (or a few dozen an item) would go far past that over the run.

local GROWTH_LIMIT_KIB = 4 * 1024

-- Under AddressSanitizer (make check-san) freed memory sits in its
-- quarantine and VmRSS says nothing about leaks (LeakSanitizer checks those).
local check_memory = not os.getenv("PARLUA_SANITIZED")

local function rss_kib()
  collectgarbage("collect")
  collectgarbage("collect")
  local f = assert(io.open("/proc/self/status"))
  local status = f:read("a")
  f:close()
  return tonumber(status:match("VmRSS:%s*(%d+) kB"))
end

-- Descriptors and children back at their counts before, memory grown by less than the limit.
local function assert_where_they_were(fds, children, grown_kib)
  assert.are.equal(fds, helpers.fd_count())
  assert.are.equal(children, helpers.child_count())
  if check_memory then
    assert.is_true(grown_kib < GROWTH_LIMIT_KIB, ("VmRSS grew by %d KiB after the warm-up"):format(grown_kib))
  end
end

describe("soak", function()
  it("2,000 par.map calls leave descriptors, children and memory where they were", function()
    helpers.settle()
    local fds, children = helpers.fd_count(), helpers.child_count()
    local function fn(x)
      if x == "fail" then error("failing on purpose") end
      return {x, tostring(x)}
    end
    local lists = {}
    for size = 1, 8 do
      local list = {}
      for i = 1, size do list[i] = i end
      lists[size] = list
    end
    local failing = {1, "fail", 3}
    local warm
    for call = 1, 2000 do
      if call % 10 == 0 then
        -- now and then an item fails, collected or raised
        if call % 20 == 0 then
          local r, errs = par.map(fn, failing, {workers = 2, on_error = "collect"})
          assert(r[3][1] == 3 and errs[2].kind == "error", "call " .. call)
        else
          local ok, err = pcall(par.map, fn, failing, {workers = 2})
          assert(not ok and err.index == 2, "call " .. call)
        end
      else
        local list = lists[call % 8 + 1]
        local r = par.map(fn, list, {workers = 2})
        assert(#r == #list and r[#list][2] == tostring(#list), "call " .. call)
      end
      if call == 200 then warm = rss_kib() end
    end
    local grown = rss_kib() - warm
    assert_where_they_were(fds, children, grown)
  end)

  it("200,000 items through one small queue leave descriptors, children and memory where they were", function()
    helpers.settle()
    local fds, children = helpers.fd_count(), helpers.child_count()
    local n = 200000
    local warm, final
    do
      local q <close> = par.queue(function(x) return x * 2 end, {workers = 2, capacity = 4})
      local count, id_sum = 0, 0
      local function take(id, result)
        assert(result == id * 2, "item " .. tostring(id))
        count = count + 1
        id_sum = id_sum + id
      end
      for i = 1, n do
        q:push(i)
        if q:pending() > 8 then take(q:pop()) end
        if i == n // 10 then warm = rss_kib() end
      end
      q:close()
      for id, result in q:results() do take(id, result) end
      assert.are.equal(n, count)
      assert.are.equal(n * (n + 1) // 2, id_sum) -- with the count: every id once
      final = rss_kib() -- the queue still alive, as at the warm-up reading
    end
    local grown = final - warm
    helpers.settle()
    assert_where_they_were(fds, children, grown)
  end)
end)
