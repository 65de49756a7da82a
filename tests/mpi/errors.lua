-- An item that raises on one rank raises on every rank; collect gathers all errors everywhere.
local items = {}
for i = 1, 60 do items[i] = i end
local ok, e = pcall(par.map, function(x) if x == 37 then error("boom " .. x) end return x end, items)
print(par.rank(), ok, e.index, e.kind, e.rank ~= nil, e.message, e.traceback:match("traceback") ~= nil)
local res, errs = par.map(function(x) if x % 20 == 0 then error("c" .. x, 0) end return x end,
  items, {on_error = "collect"})
print(par.rank(), res[19], res[20], errs[20].message, errs[40].message, errs[60].index,
  getmetatable(errs[60]) == par.Error, errs[1] == nil)
