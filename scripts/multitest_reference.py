#!/usr/bin/env python3
"""Reference values for persona-core's multiple-testing corrections (crates/persona-core/src/stats/multitest.rs).

Writes crates/persona-core/tests/data/multitest_reference.json, which
crates/persona-core/tests/multitest_reference.rs checks the Rust implementation against (to 1e-12).
The JSON is committed, so CI needs no Python; rerun this script only when adding cases.

How to run (from the repository root):

    python3 -m venv /tmp/mt-ref
    /tmp/mt-ref/bin/pip install statsmodels numpy
    /tmp/mt-ref/bin/python scripts/multitest_reference.py

Reference: statsmodels.stats.multitest.multipletests(p, method='holm' | 'fdr_bh')[1], the adjusted
p-values. Cases are deterministic (fixed seed): families of 1 to 40 p-values, uniform, skewed
toward 0 (many true effects), with ties, with exact 0 and 1, and tiny values.
"""

import json
import pathlib
import platform

import numpy as np
import statsmodels
from statsmodels.stats.multitest import multipletests

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/persona-core/tests/data/multitest_reference.json"


def main():
    rng = np.random.default_rng(2026)
    families = [[0.01, 0.04, 0.03, 0.5], [0.2], [0.0, 1.0, 0.5, 0.5, 0.5], [1e-300, 1e-12, 0.049, 0.051]]
    for m in [2, 3, 5, 8, 13, 20, 40]:
        families.append(rng.uniform(size=m).tolist())
        families.append((rng.uniform(size=m) ** 4).tolist())
        ties = rng.choice([0.001, 0.01, 0.02, 0.2, 0.7], size=m).tolist()
        families.append(ties)
    cases = []
    for p in families:
        cases.append({
            "p": p,
            "holm": multipletests(p, method="holm")[1].tolist(),
            "benjamini_hochberg": multipletests(p, method="fdr_bh")[1].tolist(),
        })
    OUT.write_text(json.dumps({
        "generated_by": "scripts/multitest_reference.py",
        "versions": {"statsmodels": statsmodels.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "cases": cases,
    }, indent=None, separators=(",", ":")) + "\n")
    print(f"{len(cases)} families written to {OUT}")


if __name__ == "__main__":
    main()
