#!/usr/bin/env python3
"""Python's side of `make bench`: one workload, timed with multiprocessing.

Usage: python3 bench/pool_bench.py WORKLOAD --workers W [--reps R] [--size N]

WORKLOAD is one of: startup, tiny, chunk1, cpu, big, submit, imap_unordered
(see bench/README.md). Prints one JSON object on stdout, for bench/run.lua
to read:

  {"workload": ..., "workers": W, "reps": R, "python": "3.11.7",
   "loop_ms": median of the plain Python loop (null when not measured),
   "pool_ms": median of the pool run (multiprocessing.Pool, or
              concurrent.futures.ProcessPoolExecutor for "submit"),
   "notes": {...workload details...}}

Each time is the median of R repetitions measured with time.perf_counter().
Standard library only; the pools always use the 'fork' start method.
"""

import argparse
import concurrent.futures
import gc
import json
import multiprocessing
import statistics
import sys
import time

CPU_TARGET_MS = 4.0      # the CPU-bound item aims at this many ms
BIG_LEN = 2_000_000      # integers in each result of the "big" workload

FORK = multiprocessing.get_context("fork")


# --- the functions the workers run (module level, so the pool can find them)

def trivial(x):
    return x


def double(x):
    return x * 2


def spin(n):
    """The CPU-bound item: the same integer loop as spin() in bench/run.lua."""
    s = 0
    for i in range(1, n + 1):
        s = (s + i * i) % 1000003
    return s


def big_list(k):
    """A list of BIG_LEN integers: k+1, k+2, ..., k+BIG_LEN."""
    return list(range(k + 1, k + 1 + BIG_LEN))


# --- timing helpers

def time_ms(fn):
    """Runs fn once and returns the elapsed milliseconds."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def median_ms(fn, reps):
    return statistics.median(time_ms(fn) for _ in range(reps))


def calibrate_spin():
    """The loop count that makes one spin() call take about CPU_TARGET_MS."""
    probe = 60_000
    ms = median_ms(lambda: spin(probe), 5)
    return max(1, int(probe * CPU_TARGET_MS / max(ms, 1e-6)))


# --- workloads: each returns (loop_ms, pool_ms, notes)

def bench_startup(workers, reps):
    def with_pool():
        p = FORK.Pool(workers)
        p.map(trivial, [1, 2])
        p.close()
        p.join()

    loop_ms = median_ms(lambda: [trivial(x) for x in [1, 2]], reps)
    pool_ms = median_ms(with_pool, reps)
    return loop_ms, pool_ms, {"items": 2, "timed": "Pool() + map + close + join"}


def run_on_pool(workers, reps, fn, items, **map_args):
    """Median time of pool.map(fn, items) on one pool made beforehand."""
    with FORK.Pool(workers) as pool:
        pool.map(trivial, range(workers))  # make sure every worker is up
        return median_ms(lambda: pool.map(fn, items, **map_args), reps)


def bench_tiny(workers, reps, size):
    xs = list(range(1, size + 1))
    loop_ms = median_ms(lambda: [double(x) for x in xs], reps)
    pool_ms = run_on_pool(workers, reps, double, xs)
    return loop_ms, pool_ms, {"items": size, "chunksize": "default"}


def bench_chunk1(workers, reps, size):
    xs = list(range(1, size + 1))
    loop_ms = median_ms(lambda: [double(x) for x in xs], reps)
    pool_ms = run_on_pool(workers, reps, double, xs, chunksize=1)
    return loop_ms, pool_ms, {"items": size, "chunksize": 1}


def bench_cpu(workers, reps, size):
    n = calibrate_spin()
    xs = [n] * size
    loop_ms = median_ms(lambda: [spin(x) for x in xs], reps)
    pool_ms = run_on_pool(workers, reps, spin, xs)
    return loop_ms, pool_ms, {"items": size, "loop_count": n,
                              "item_ms": loop_ms / size}


def bench_big(workers, reps):
    ks = [0, 1]
    loop_ms = median_ms(lambda: [big_list(k) for k in ks], reps)
    pool_ms = run_on_pool(workers, reps, big_list, ks)
    return loop_ms, pool_ms, {"items": 2, "ints_per_result": BIG_LEN}


def bench_submit(workers, reps, size):
    """Per-item cost of ProcessPoolExecutor: submit every item, then take the
    results with as_completed. The executor is made and warmed up once,
    outside the timing, like the Pool of the other workloads."""
    xs = range(1, size + 1)
    want = size * (size + 1)
    ok = True

    def run(ex):
        nonlocal ok
        futures = [ex.submit(double, x) for x in xs]
        total = 0
        for f in concurrent.futures.as_completed(futures):
            total += f.result()
        ok = ok and total == want

    loop_ms = median_ms(lambda: [double(x) for x in xs], reps)
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=FORK) as ex:
        list(ex.map(trivial, range(workers)))  # make sure every worker is up
        pool_ms = median_ms(lambda: run(ex), reps)
    return loop_ms, pool_ms, {"items": size, "timed": "submit each + as_completed",
                              "us_per_item": pool_ms * 1000.0 / size, "ok": ok}


def bench_imap_unordered(workers, reps, size):
    """Per-item cost of Pool.imap_unordered with its default chunksize=1."""
    xs = range(1, size + 1)
    want = size * (size + 1)
    ok = True

    def run(pool):
        nonlocal ok
        total = 0
        for r in pool.imap_unordered(double, xs):
            total += r
        ok = ok and total == want

    loop_ms = median_ms(lambda: [double(x) for x in xs], reps)
    with FORK.Pool(workers) as pool:
        pool.map(trivial, range(workers))  # make sure every worker is up
        pool_ms = median_ms(lambda: run(pool), reps)
    return loop_ms, pool_ms, {"items": size, "chunksize": 1,
                              "us_per_item": pool_ms * 1000.0 / size, "ok": ok}


WORKLOADS = ["startup", "tiny", "chunk1", "cpu", "big", "submit", "imap_unordered"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=WORKLOADS)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=None, help="number of items")
    args = ap.parse_args()

    if args.workload == "startup":
        result = bench_startup(args.workers, args.reps)
    elif args.workload == "tiny":
        result = bench_tiny(args.workers, args.reps, args.size or 1_000_000)
    elif args.workload == "chunk1":
        result = bench_chunk1(args.workers, args.reps, args.size or 20_000)
    elif args.workload == "cpu":
        result = bench_cpu(args.workers, args.reps, args.size or 200)
    elif args.workload == "submit":
        result = bench_submit(args.workers, args.reps, args.size or 10_000)
    elif args.workload == "imap_unordered":
        result = bench_imap_unordered(args.workers, args.reps, args.size or 20_000)
    else:
        result = bench_big(args.workers, args.reps)

    loop_ms, pool_ms, notes = result
    json.dump({
        "workload": args.workload,
        "workers": args.workers,
        "reps": args.reps,
        "python": sys.version.split()[0],
        "loop_ms": loop_ms,
        "pool_ms": pool_ms,
        "notes": notes,
    }, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
