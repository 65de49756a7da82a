"""Python 3 multiprocessing side of bench/dict_bench.lua: the same
workloads on a Manager().dict(), timed inside worker processes. Prints
JSON {"workload": microseconds_per_op, ...}. Standard library only."""
import json
import multiprocessing as mp
import statistics
import time

REPS = 5
KEYS = 20000
INCRS = 5000


def set_get_worker(d, out):
    t0 = time.perf_counter()
    for i in range(KEYS):
        d[i] = i
    for i in range(KEYS):
        assert d[i] == i
    out.put((time.perf_counter() - t0) / (2 * KEYS) * 1e6)


def set_get(ctx, manager):
    d, out = manager.dict(), ctx.Queue()
    p = ctx.Process(target=set_get_worker, args=(d, out))
    p.start()
    us = out.get()
    p.join()
    return us


def incr_worker(d, lock, start, out):
    start.wait()
    t0 = time.perf_counter()
    for _ in range(INCRS):
        with lock:
            d["hits"] = d.get("hits", 0) + 1
    out.put(time.perf_counter() - t0)


def incr_2workers(ctx, manager):
    d, lock, start, out = manager.dict(), manager.Lock(), ctx.Barrier(2), ctx.Queue()
    ps = [ctx.Process(target=incr_worker, args=(d, lock, start, out)) for _ in range(2)]
    for p in ps:
        p.start()
    times = [out.get(), out.get()]
    for p in ps:
        p.join()
    assert d["hits"] == 2 * INCRS, "lost updates"
    return max(times) / INCRS * 1e6


def main():
    ctx = mp.get_context("fork")
    result = {}
    with ctx.Manager() as manager:
        for name, fn in (("dict_set_get", set_get), ("dict_incr_2workers", incr_2workers)):
            result[name] = statistics.median(fn(ctx, manager) for _ in range(REPS))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
