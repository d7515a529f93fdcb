#!/usr/bin/env python3
"""Reference values for persona-core's taste-cluster building blocks (crates/persona-core/src/cluster.rs).

Writes crates/persona-core/tests/data/cluster_reference.json, which
crates/persona-core/tests/cluster_reference.rs checks the Rust implementation against without
Python. The JSON is committed; rerun this script only when adding cases.

How to run (from the repository root):

    python3 -m venv /tmp/cluster-ref
    /tmp/cluster-ref/bin/pip install scikit-learn==1.9.1 numpy==1.26.4
    /tmp/cluster-ref/bin/python scripts/cluster_reference.py

Reference functions (scikit-learn 1.9.1):
  silhouette  sklearn.metrics.silhouette_score(X, labels, metric='euclidean') on every point (no
              sample_size): the mean over points of (b - a) / max(a, b), 0 for a point alone in
              its cluster.
  lloyd       sklearn.cluster.KMeans(n_clusters=k, init=<given centroids>, n_init=1,
              algorithm='lloyd', tol=1e-4, max_iter=300).fit(X): the final centroids, labels
              and inertia. Its stopping rule: labels unchanged, or the centroids' squared shift
              summed over clusters <= tol * mean(var(X, axis=0)); then the labels are brought up
              to date with the final centroids. Starting both from the same centroids removes the
              seeding (pg_persona's k-means++ draws from its own generator) from the comparison.

Data: float32 points (the Rust side clusters f32 factors; scikit-learn is given the same values
as float64) from Gaussian blobs with overlap, uniform noise, 1-D lines, duplicates, a singleton
cluster; initial centroids are points of the set chosen with a fixed seed.
"""
import json
import os

import numpy as np
import sklearn
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "persona-core", "tests", "data",
                   "cluster_reference.json")


def points_f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def f32_list(x):
    """Points as JSON numbers that parse back to the same float32 (shortest float32 repr)."""
    return [[float(repr(np.float32(v))) for v in row] for row in x]


def blobs(rng, n, dim, centres, spread):
    c = rng.normal(0, 1, size=(centres, dim)) * 3
    labels = rng.integers(0, centres, size=n)
    return points_f32(c[labels] + rng.normal(0, spread, size=(n, dim))), labels


def main():
    rng = np.random.default_rng(20261202)
    silhouettes, lloyds = [], []

    def add_silhouette(name, x, labels):
        labels = np.asarray(labels)
        silhouettes.append({"name": name, "points": f32_list(x), "labels": labels.tolist(),
                            "silhouette": float(silhouette_score(x, labels, metric="euclidean"))})

    def add_lloyd(name, x, k, seed):
        init = x[np.random.default_rng(seed).choice(len(x), size=k, replace=False)]
        km = KMeans(n_clusters=k, init=init, n_init=1, algorithm="lloyd", tol=1e-4,
                    max_iter=300).fit(x)
        assert len(set(km.labels_.tolist())) == k, f"{name}: an empty cluster"
        lloyds.append({"name": name, "points": f32_list(x), "init": f32_list(init),
                       "centroids": km.cluster_centers_.tolist(), "labels": km.labels_.tolist(),
                       "inertia": float(km.inertia_), "iterations": int(km.n_iter_)})

    for case, (n, dim, centres, spread) in enumerate([(300, 4, 3, 0.5), (300, 8, 5, 2.0),
                                                      (250, 2, 4, 1.5), (300, 12, 6, 3.0)]):
        x, truth = blobs(rng, n, dim, centres, spread)
        add_silhouette(f"blobs {case} true labels", x, truth)
        add_silhouette(f"blobs {case} random labels", x, rng.integers(0, centres, size=n))
        add_lloyd(f"blobs {case}", x, centres, 100 + case)
        add_lloyd(f"blobs {case} k+2", x, centres + 2, 200 + case)
    x = points_f32(rng.uniform(-1, 1, size=(200, 3)))
    add_silhouette("uniform 3 labels", x, rng.integers(0, 3, size=200))
    add_lloyd("uniform k=4", x, 4, 7)
    line = points_f32(np.sort(rng.uniform(0, 10, size=(60, 1)), axis=0))
    add_silhouette("line halves", line, [0] * 30 + [1] * 30)
    add_lloyd("line k=3", line, 3, 3)
    dup = points_f32(np.repeat(rng.normal(0, 1, size=(20, 2)), 3, axis=0))
    add_silhouette("duplicates", dup, np.arange(60) // 3 % 4)
    single = points_f32(rng.normal(0, 1, size=(40, 3)))
    labels = np.r_[[0], np.ones(19, dtype=int), np.full(20, 2)]
    add_silhouette("a singleton cluster", single, labels)

    out = {"sklearn": sklearn.__version__, "numpy": np.__version__,
           "silhouette": silhouettes, "lloyd": lloyds}
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {OUT}: {len(silhouettes)} silhouette and {len(lloyds)} Lloyd cases")


if __name__ == "__main__":
    main()
