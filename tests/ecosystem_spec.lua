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
end)
