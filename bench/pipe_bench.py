"""Python's Pipe and Queue doing what bench/pipe_bench.lua does with
par.pipe and par.channel; prints {"workload": microseconds per op}."""
import json
import multiprocessing as mp
import time


def echo(conn):
    while True:
        v = conn.recv()
        if v is None:
            return
        conn.send(v + 1)


def pipe_ping_pong(n):
    mine, theirs = mp.Pipe()
    p = mp.Process(target=echo, args=(theirs,))
    p.start()
    start = time.perf_counter()
    for i in range(1, n + 1):
        mine.send(i)
        assert mine.recv() == i + 1
    elapsed = time.perf_counter() - start
    mine.send(None)
    p.join()
    return elapsed / n


def read_all(q, ready, n):
    ready.put(True)
    for i in range(1, n + 1):
        assert q.get() == i


def queue_put_get(n):
    q, ready = mp.Queue(), mp.Queue()
    p = mp.Process(target=read_all, args=(q, ready, n))
    p.start()
    ready.get()
    start = time.perf_counter()
    for i in range(1, n + 1):
        q.put(i)
    p.join()
    return (time.perf_counter() - start) / n


if __name__ == "__main__":
    print(json.dumps({
        "pipe_ping_pong": pipe_ping_pong(20000) * 1e6,
        "channel_put_get": queue_put_get(100000) * 1e6,
    }))
