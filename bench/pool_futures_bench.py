"""A reused multiprocessing.Pool and a ProcessPoolExecutor doing what
bench/pool_futures_bench.lua does with par.pool, two workers, fork start
method; prints {"workload": microseconds per op}."""
import concurrent.futures
import gc
import json
import multiprocessing
import time

FORK = multiprocessing.get_context("fork")


def tiny(x):
    return x


def double(x):
    return x * 2


def per_op(n, fn):
    gc.collect()
    start = time.perf_counter()
    for i in range(1, n + 1):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6


def median_op(runs, n, fn):
    """The median of per_op over several runs: a first big map also pays
    for growing the heap, on either side."""
    times = sorted(per_op(n, fn) for _ in range(runs))
    return times[runs // 2]


def submit_all(ex, n):
    futures = [ex.submit(tiny, i) for i in range(1, n + 1)]
    for f in concurrent.futures.as_completed(futures):
        f.result()


if __name__ == "__main__":
    out = {}
    with FORK.Pool(2) as pool:
        pool.map(tiny, [1, 2])
        out["warm_map_2"] = per_op(2000, lambda i: pool.map(tiny, [1, 2]))
        items = list(range(1, 1_000_001))
        out["map_1m"] = median_op(3, 1, lambda i: pool.map(double, items)) / 1e6
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=FORK) as ex:
        ex.submit(tiny, 1).result()
        out["submit_result"] = per_op(5000, lambda i: ex.submit(tiny, i).result())
        out["as_completed_20k"] = per_op(1, lambda i: submit_all(ex, 20000)) / 20000
    print(json.dumps(out))
