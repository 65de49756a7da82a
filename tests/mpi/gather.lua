-- gather = "root": only rank 0 gets the results.
local items = {}
for i = 1, 50 do items[i] = i end
local out = par.map(function(x) return x * x end, items, {gather = "root"})
print(par.rank(), out and #out, out and out[50])
