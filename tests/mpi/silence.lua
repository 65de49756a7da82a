-- Only rank 0's output shows, unless PARLUA_MPI_OUTPUT=all.
print("out from rank " .. par.rank())
io.stderr:write("err from rank " .. par.rank() .. "\n")
par.map(function(x) print("worker of rank " .. par.rank()) return x end, {1, 2, 3, 4, 5, 6}, {workers = 1})
