-- What users of the ecosystem look for first (issue 13): the embedding
-- example, the version, the interpreter's own options and test suite,
-- clear misuse errors and a spawned process's exit code. Install and
-- LuaRocks are make targets (check-install, check-rock).
local helpers = require "tests.helpers"
local par = helpers.par
local quote, read_file, write_file = helpers.quote, helpers.read_file, helpers.write_file

local temps = {}
local function tempname()
  local name = os.tmpname()
  temps[#temps + 1] = name
  return name
end

-- Runs a shell command; returns its exit status, stdout and stderr.
local function shell(cmd)
  local out, err = tempname(), tempname()
  local _, _, status = os.execute(("%s >%s 2>%s"):format(cmd, quote(out), quote(err)))
  return status, read_file(out), read_file(err)
end

describe("ecosystem", function()
  teardown(function()
    for _, name in ipairs(temps) do os.remove(name) end
  end)

  describe("examples/host (build/batch)", function()
    local function batch(rules, orders)
      local audit = tempname()
      local status, out, err = shell(("build/batch %s %s %s"):format(quote(rules), quote(orders), quote(audit)))
      return status, out, err, read_file(audit)
    end

    it("reviews the sample orders as examples/host/expected.txt says, one audit line per hold", function()
      local status, out, err, audit = batch("examples/host/rules.lua", "examples/host/orders.csv")
      assert.are.equal(0, status, err)
      assert.are.equal(read_file("examples/host/expected.txt"), out)
      local held = {}
      for id in out:gmatch("(%S+) hold") do held[#held + 1] = id end
      local audited = {}
      for id in audit:gmatch("(%S+)[^\n]*\n") do audited[#audited + 1] = id end
      table.sort(audited)
      assert.are.same(held, audited)
    end)

    it("keeps the order of many records read from standard input", function()
      local orders = {"id,country,amount"}
      for i = 1, 3000 do
        orders[#orders + 1] = ("B%05d,%s,%d"):format(i, ({"DE", "FR", "US"})[i % 3 + 1], i % 1000)
      end
      local file = write_file(tempname(), table.concat(orders, "\n") .. "\n")
      local status, out, err = shell(("build/batch examples/host/rules.lua - /dev/null < %s"):format(quote(file)))
      assert.are.equal(0, status, err)
      local i = 0
      for id in out:gmatch("(B%d+) ") do
        i = i + 1
        assert.are.equal(("B%05d"):format(i), id)
      end
      assert.are.equal(3000, i)
      assert.is_truthy(out:find("3000 orders: %d+ accepted, %d+ held, 1000 refused\n$"))
    end)

    it("runs the rules in workers, which call the program's C functions and its userdata", function()
      local rules = write_file(tempname(), [[
        local parent = par.pid()
        function review(order)
          return {verdict = host.digest(order.id) .. "/" .. tostring(limits:of(order.country)),
                  reason = par.pid() == parent and "parent" or "worker"}
        end]])
      local orders = write_file(tempname(), "a,DE,1\nb,US,2\n")
      local status, out, err = batch(rules, orders)
      assert.are.equal(0, status, err)
      assert.are.equal("a 3826002220/900.0: worker\nb 3876335077/nil: worker\n"
        .. "2 orders: 0 accepted, 0 held, 0 refused\n", out)
    end)

    it("reports the item whose rule failed, and exits 1", function()
      local rules = write_file(tempname(), [[
        function review(order)
          if order.id == "b" then error("no rule for " .. order.id) end
          return {verdict = "accept"}
        end]])
      local orders = write_file(tempname(), "a,DE,1\nb,DE,2\n")
      local status, out, err = batch(rules, orders)
      assert.are.equal(1, status)
      assert.are.equal("", out)
      assert.is_truthy(err:find("^batch: review: par%.map: item 2 failed: .-no rule for b"), err)
    end)
  end)

  describe("par.version", function()
    it("is the string runtime/parlua.h names, 'parlua X.Y.Z'", function()
      local header = read_file("runtime/parlua.h")
      assert.are.equal(header:match('#define%s+PARLUA_VERSION%s+"(.-)"'), par.version)
      assert.is_truthy(par.version:match("^parlua %d+%.%d+%.%d+$"))
    end)

    it("is the version CHANGELOG.md's newest entry names", function()
      local newest = read_file("CHANGELOG.md"):match("\n## (%d+%.%d+%.%d+)")
      assert.are.equal("parlua " .. newest, par.version)
    end)
  end)

  describe("a table that is not a list", function()
    local function identity(x) return x end
    -- through pcall, Lua names the function 'par.map'; called directly, 'map'
    local function is_dictionary_error(err)
      return err:find("^bad argument #2 to '[%w.]*map' %(list expected, got a table with keys but no items 1%.%.n%)$")
    end

    it("is a bad argument #2 to par.map, before anything forks", function()
      local ok, err = pcall(par.map, identity, {a = 1, b = 2})
      assert.is_false(ok)
      assert.is_truthy(is_dictionary_error(err), err)
      ok, err = pcall(par.map, identity, {[2] = "no first item"})
      assert.is_false(ok)
      assert.is_truthy(is_dictionary_error(err), err)
    end)

    it("does not change an empty table, which still maps to {}", function()
      assert.are.same({}, par.map(identity, {}))
    end)

    it("does not change a list with keys besides its items", function()
      assert.are.same({1, 2}, par.map(identity, {1, 2, name = "extra"}))
    end)

    it("is a bad argument to par.imap and par.pipeline too", function()
      local ok, err = pcall(par.imap, identity, {a = 1})
      assert.is_false(ok)
      assert.is_truthy(err:find("bad argument #2 to 'imap' (list expected, got a table with keys", 1, true), err)
      ok, err = pcall(par.pipeline, {a = 1})
      assert.is_false(ok)
      assert.is_truthy(err:find("bad argument #1 to 'pipeline' (list expected, got a table with keys", 1, true), err)
    end)
  end)

  describe("ipairs(t) or pairs(t) as a source", function()
    local t = {10, 20, 30}
    local function identity(x) return x end

    it("tells par.imap's caller to pass the list itself", function()
      local ok, err = pcall(par.imap, identity, ipairs(t))
      assert.is_false(ok)
      assert.is_truthy(err:find("bad argument #2 to 'imap' (got ipairs(t): pass the list itself, par.imap(fn, t))",
        1, true), err)
      ok, err = pcall(par.imap, identity, pairs(t))
      assert.is_false(ok)
      assert.is_truthy(err:find("bad argument #2 to 'imap' (got pairs(t): pass a list, or a function", 1, true), err)
    end)

    it("tells par.pipeline's caller to pass the list itself", function()
      local ok, err = pcall(par.pipeline, ipairs(t))
      assert.is_false(ok)
      assert.is_truthy(err:find("bad argument #1 to 'pipeline' (got ipairs(t): pass the list itself, par.pipeline(t))",
        1, true), err)
      ok, err = pcall(par.pipeline, pairs(t))
      assert.is_false(ok)
      assert.is_truthy(err:find("bad argument #1 to 'pipeline' (got pairs(t)", 1, true), err)
    end)

    it("leaves the right calls working", function()
      local got = {}
      for i, v in par.imap(identity, t) do got[i] = v end
      assert.are.same(t, got)
      assert.are.same(t, par.pipeline(t):map(identity):collect())
    end)
  end)

  describe("proc.exitcode of par.spawn", function()
    it("is nil while the process runs", function()
      local proc = par.spawn(function() par.sleep(60) end)
      assert.is_nil(proc.exitcode)
      proc:kill("KILL")
      pcall(proc.join, proc)
    end)

    it("is 0 once fn has returned, and 1 once it raised", function()
      local ok = par.spawn(function() return "fine" end)
      assert.are.equal("fine", ok:join())
      assert.are.equal(0, ok.exitcode)
      local failed = par.spawn(function() error("no") end)
      assert.is_false(pcall(failed.join, failed))
      assert.are.equal(1, failed.exitcode)
    end)

    it("is the status given to os.exit", function()
      local proc = par.spawn(function() os.exit(7) end)
      assert.is_false(pcall(proc.join, proc))
      assert.are.equal(7, proc.exitcode)
    end)

    it("is minus the signal that killed the process", function()
      local proc = par.spawn(function() par.sleep(60) end)
      proc:kill("KILL")
      assert.is_false(pcall(proc.join, proc))
      assert.are.equal(-9, proc.exitcode)
      local term = par.spawn(function() par.sleep(60) end)
      term:kill()
      assert.is_false(pcall(term.join, term))
      assert.are.equal(-15, term.exitcode)
    end)

    it("becomes known without a join, and join still gives the results after", function()
      local proc = par.spawn(function() return 1, 2 end)
      while proc.exitcode == nil do par.sleep(0.005) end
      assert.are.equal(0, proc.exitcode)
      assert.are.same({1, 2}, {proc:join()})
    end)

    it("is refused in a process that did not spawn it", function()
      local proc = par.spawn(function() return 1 end)
      proc:join()
      local ok, err = par.spawn(function() return pcall(function() return proc.exitcode end) end):join()
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("belongs to process " .. par.pid(), 1, true))
    end)
  end)
end)
