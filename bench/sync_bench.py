"""Python 3 multiprocessing side of bench/sync_bench.lua: the same
workloads, timed inside worker processes. Prints JSON
{"workload": microseconds_per_op, ...}. Standard library only."""
import json
import multiprocessing as mp
import statistics
import time

REPS = 5
ADDS = 100000
LOCKS = 200000


def add_worker(v, start, out):
    start.wait()
    t0 = time.perf_counter()
    for _ in range(ADDS):
        with v.get_lock():
            v.value += 1
    out.put(time.perf_counter() - t0)


def value_add(ctx):
    v, start, out = ctx.Value("q", 0), ctx.Barrier(2), ctx.Queue()
    ps = [ctx.Process(target=add_worker, args=(v, start, out)) for _ in range(2)]
    for p in ps:
        p.start()
    times = [out.get(), out.get()]
    for p in ps:
        p.join()
    assert v.value == 2 * ADDS, "lost updates"
    return max(times) / ADDS * 1e6


def lock_worker(lock, out):
    t0 = time.perf_counter()
    for _ in range(LOCKS):
        lock.acquire()
        lock.release()
    out.put((time.perf_counter() - t0) / LOCKS * 1e6)


def lock_uncontended(ctx):
    lock, out = ctx.Lock(), ctx.Queue()
    p = ctx.Process(target=lock_worker, args=(lock, out))
    p.start()
    us = out.get()
    p.join()
    return us


def main():
    ctx = mp.get_context("fork")
    result = {}
    for name, fn in (("value_add_2workers", value_add), ("lock_uncontended", lock_uncontended)):
        result[name] = statistics.median(fn(ctx) for _ in range(REPS))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
