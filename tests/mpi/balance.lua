-- Rank 1's items are slow: the others take more of them.
local items = {}
for i = 1, 120 do items[i] = i end
local out = par.map(function()
  par.sleep(par.rank() == 1 and 0.02 or 0.002)
  return par.rank()
end, items, {workers = 1})
local n = {[0] = 0, 0, 0}
for _, r in ipairs(out) do n[r] = n[r] + 1 end
print(n[0], n[1], n[2])
