"""numpy brute-force baseline for bench/bench_search.c: the same shards, the same
queries (same generator, so top-1 rows can be compared), k nearest by inner
product (the shards hold unit vectors), best of --repeat.

Two ways: "numpy (in RAM)" has every shard concatenated in memory beforehand
(loading not timed: the most favourable case for numpy); "numpy (mmap shards)"
streams the shards with np.load(mmap_mode='r') like stemline does.
Prints one JSON line per (way, query count)."""
import argparse, glob, json, time
import numpy as np


def unit_queries(nq, dim):
    # the xorshift + Box-Muller generator of bench_search.c, seed 12345
    s = 12345
    mask = (1 << 64) - 1
    out = np.empty((nq, dim), dtype=np.float32)

    def nxt():
        nonlocal s
        s ^= (s << 13) & mask
        s ^= s >> 7
        s ^= (s << 17) & mask
        return ((s >> 11) + 0.5) / 9007199254740992.0

    for r in range(nq):
        row = np.empty(dim)
        for i in range(dim):
            a, b = nxt(), nxt()
            row[i] = np.float32(np.sqrt(-2 * np.log(a)) * np.cos(2 * np.pi * b))
        out[r] = (row / np.sqrt((row.astype(np.float64) ** 2).sum())).astype(np.float32)
    return out


def topk(scores, k):
    # scores [rows, nq] -> per query the k best rows, best first
    idx = np.argpartition(-scores, k - 1, axis=0)[:k]
    part = np.take_along_axis(scores, idx, axis=0)
    order = np.argsort(-part, axis=0, kind="stable")
    return np.take_along_axis(idx, order, axis=0), np.take_along_axis(part, order, axis=0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="bench/work/search-1000000x256")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", default="1,16")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    files = sorted(glob.glob(f"{a.dir}/shard-*.npy"))
    maps = [np.load(f, mmap_mode="r") for f in files]
    X = np.concatenate([np.asarray(m, dtype=np.float32) for m in maps])
    rows, dim = X.shape
    for nq in [int(x) for x in a.queries.split(",")]:
        Q = unit_queries(nq, dim)
        for way in ("numpy (in RAM)", "numpy (mmap shards)"):
            best, res = float("inf"), None
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                if way == "numpy (in RAM)":
                    res = topk(X @ Q.T, a.k)
                else:
                    bi, bs, off = [], [], 0
                    for m in maps:
                        i, s = topk(np.asarray(m, dtype=np.float32) @ Q.T, min(a.k, len(m)))
                        bi.append(i + off)
                        bs.append(s)
                        off += len(m)
                    s = np.concatenate(bs)
                    i = np.concatenate(bi)
                    j, s = topk(s, a.k)
                    res = (np.take_along_axis(i, j, axis=0), s)
                best = min(best, time.perf_counter() - t0)
            print(json.dumps({"impl": way, "rows": rows, "dim": dim, "k": a.k, "queries": nq,
                              "seconds": round(best, 6), "vectors_per_s": round(rows / best),
                              "query_vectors_per_s": round(rows * nq / best),
                              "top1_row": int(res[0][0, 0]), "top1_score": float(res[1][0, 0])}), flush=True)


if __name__ == "__main__":
    main()
