#!/usr/bin/env python3
"""Reference values for persona-core's beyond-accuracy metrics (crates/persona-core/src/cf/beyond.rs).

Writes crates/persona-core/tests/data/cf_metrics_reference.json, which
crates/persona-core/tests/cf_metrics_reference.rs checks the Rust implementation against (to 1e-9).
The JSON is committed, so CI needs no Python; rerun this script only when adding cases.

How to run (from the repository root):

    python3 -m venv /tmp/cfref
    /tmp/cfref/bin/pip install "pandas>2,<3" "scikit-learn<2" numpy
    /tmp/cfref/bin/pip install --no-deps recommenders==1.2.1
    /tmp/cfref/bin/python scripts/cf_metrics_reference.py

(`--no-deps`: Recommenders' evaluation module needs only pandas, numpy and scikit-learn; the
package's full dependency list pulls in notebook servers and deep-learning stacks.)

Reference functions, all from recommenders.evaluation.python_evaluation with their defaults
(item_sim_measure="item_cooccurrence_count", col_relevance=None): diversity, novelty,
serendipity, catalog_coverage, distributional_coverage. The data are synthetic and
deterministic (fixed seeds): users with power-law activity, items with power-law popularity,
each user's list drawn from the items they did not interact with, plus the edge cases the
definitions treat specially (lists of one item, users without training rows, recommended items
nobody trained on).
"""

import json
import pathlib
import platform
import warnings

import numpy as np
import pandas as pd
import recommenders
from recommenders.evaluation import python_evaluation as pe

warnings.simplefilter("ignore")
OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/persona-core/tests/data/cf_metrics_reference.json"


def synthetic(seed, n_users, n_items, mean_rows, k, extras):
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    train, reco = [], []
    for u in range(n_users):
        n = int(min(n_items - k - 1, max(1, rng.pareto(1.5) * mean_rows / 2 + 1)))
        items = rng.choice(n_items, size=n, replace=False, p=popularity)
        train += [(u, int(i)) for i in items]
        rest = np.setdiff1d(np.arange(n_items), items)
        length = 1 if u % 17 == 3 else k  # some lists of one item
        reco += [(u, int(i)) for i in rng.choice(rest, size=length, replace=False)]
    if extras:
        # Users absent from training, and items nobody trained on.
        for u in range(n_users, n_users + 3):
            reco += [(u, int(i)) for i in rng.choice(n_items, size=k, replace=False)]
        unseen = n_items + 5
        reco += [(0, unseen)] if (0, unseen) not in train else []
    return train, reco


def case(name, train, reco):
    tr = pd.DataFrame(train, columns=["userID", "itemID"]).astype("int64")
    rc = pd.DataFrame(reco, columns=["userID", "itemID"]).astype("int64")
    value = lambda v: None if v is None or not np.isfinite(v) else float(v)
    return {
        "name": name,
        "train": [list(p) for p in train],
        "reco": [list(p) for p in reco],
        "expected": {
            "diversity": value(pe.diversity(tr, rc)),
            "novelty": value(pe.novelty(tr, rc)),
            "serendipity": value(pe.serendipity(tr, rc)),
            "catalog_coverage": value(pe.catalog_coverage(tr, rc)),
            "distributional_coverage": value(pe.distributional_coverage(tr, rc)),
        },
    }


def main():
    cases = [
        case("hand", [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 2)], [(0, 2), (2, 0), (2, 1)]),
        case("small", *synthetic(1, 20, 15, 5, 4, False)),
        case("medium", *synthetic(7, 300, 200, 20, 10, True)),
        case("long_tail", *synthetic(42, 500, 400, 30, 10, True)),
    ]
    OUT.write_text(json.dumps({
        "generated_by": "scripts/cf_metrics_reference.py",
        "versions": {"recommenders": recommenders.__version__, "pandas": pd.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "cases": cases,
    }, indent=None, separators=(",", ":")) + "\n")
    for c in cases:
        print(c["name"], len(c["train"]), len(c["reco"]), c["expected"])


if __name__ == "__main__":
    main()
