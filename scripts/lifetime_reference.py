#!/usr/bin/env python3
"""Reference values for persona-core's customer lifetime models (crates/persona-core/src/lifetime.rs).

Writes crates/persona-core/tests/data/lifetime_reference.json, which
crates/persona-core/tests/lifetime_reference.rs checks the Rust implementation against (to 1e-4
relative). The JSON is committed, so CI needs no Python; rerun this script only when adding cases.

How to run (from the repository root). lifetimes 0.11.3 (2020) needs the numpy/pandas/scipy of
its time:

    python3 -m venv /tmp/lifetime-ref
    /tmp/lifetime-ref/bin/pip install lifetimes==0.11.3 numpy==1.26.4 pandas==1.5.3 scipy==1.11.4 autograd==1.6.2
    /tmp/lifetime-ref/bin/python scripts/lifetime_reference.py

Data: two synthetic order logs drawn from the BG/NBD process with Gamma-Gamma spends (fixed
seed; integer days, values in cents), summarised by lifetimes'
summary_data_from_transaction_data(freq='D', monetary_value_col=...), and lifetimes' own CDNOW
summary (ages in weeks; no CLV for it, whose months are in days).

Reference functions (lifetimes 0.11.3):
  summary     utils.summary_data_from_transaction_data (frequency, recency, T, monetary_value);
              the orders of the second synthetic log are kept to check the summaries
  bgnbd       BetaGeoFitter(penalizer_coef).fit(frequency, recency, T): r, alpha, a, b; then
              conditional_probability_alive and
              conditional_expected_number_of_purchases_up_to_time(t) for t = 30, 90, 365
  gamma_gamma GammaGammaFitter().fit on customers with frequency > 0 and monetary_value > 0:
              p, q, v; conditional_expected_average_profit
  clv         GammaGammaFitter.customer_lifetime_value(bgf, ..., time=12, discount_rate=0.01,
              freq='D')
  rfm         pandas Series.quantile([.2, .4, .6, .8]) of recency days, purchase days and total
              value, and pandas qcut(total value, 5) bins as 1-based scores

Optimiser: lifetimes fits with scipy's BFGS (tol 1e-7) over log-parameters. Its stopping point
sits within ~1e-6 of the optimum in likelihood but can be further from it in a flat direction of
the parameters, so the parameters recorded are lifetimes' own fit polished by scipy BFGS on
lifetimes' own likelihood (BetaGeoFitter._negative_log_likelihood /
GammaGammaFitter._negative_log_likelihood, same scaling) with gtol 1e-10; the JSON records
lifetimes' unpolished parameters too, and every prediction is lifetimes' method evaluated with
the polished parameters.
"""

import json
import math
import pathlib
import platform

import autograd
import lifetimes
import numpy as np
import pandas as pd
import scipy
from autograd import value_and_grad
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value
from lifetimes.utils import summary_data_from_transaction_data
from scipy.optimize import minimize

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/persona-core/tests/data/lifetime_reference.json"
EPOCH = pd.Timestamp("2025-01-01")


def num(v):
    """A JSON number, or None where lifetimes gives NaN or infinity (the Rust test skips those)."""
    v = float(v)
    return v if math.isfinite(v) else None


def simulate(rng, n, r, alpha, a, b, p, q, v, horizon):
    """Orders (customer, day, value) from BG/NBD purchases and Gamma-Gamma spends."""
    rows = []
    for i in range(n):
        first = int(rng.integers(0, horizon - 1))
        lam, drop = rng.gamma(r, 1 / alpha), rng.beta(a, b)
        nu = rng.gamma(q, 1 / v)
        spend = lambda: round(float(rng.gamma(p, 1 / nu)), 2) + 0.01
        rows.append((i + 1, first, spend()))
        t, alive = float(first), rng.random() > drop
        while alive:
            t += rng.exponential(1 / lam)
            if t > horizon:
                break
            rows.append((i + 1, int(t), spend()))
            if rng.random() < 0.1:  # a second order the same day
                rows.append((i + 1, int(t), spend()))
            alive = rng.random() > drop
    return rows


def polish(fitter, args, log_params):
    """lifetimes' likelihood minimised further from its own solution (see the docstring)."""
    f = value_and_grad(lambda lp: fitter._negative_log_likelihood(lp, *args))
    out = minimize(f, log_params, jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 10000})
    return out.x


def bgnbd(summary, penalizer):
    f, rec, T = summary["frequency"].to_numpy(), summary["recency"].to_numpy(), summary["T"].to_numpy()
    bgf = BetaGeoFitter(penalizer_coef=penalizer).fit(f, rec, T)
    raw = [float(bgf.params_[k]) for k in ("r", "alpha", "a", "b")]
    scale = bgf._scale
    lp = np.log([raw[0], raw[1] * scale, raw[2], raw[3]])
    lp = polish(bgf, (f.astype(int), rec * scale, T * scale, np.ones_like(rec, dtype=int), penalizer), lp)
    params = np.exp(lp)
    params[1] /= scale
    for k, v in zip(("r", "alpha", "a", "b"), params):
        bgf.params_[k] = v
    return bgf, raw, [float(x) for x in params]


def gamma_gamma(summary, penalizer):
    rep = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    ggf = GammaGammaFitter(penalizer_coef=penalizer).fit(rep["frequency"], rep["monetary_value"])
    raw = [float(ggf.params_[k]) for k in ("p", "q", "v")]
    args = (rep["frequency"].to_numpy(), rep["monetary_value"].to_numpy(), np.ones(len(rep)), penalizer)
    lp = polish(ggf, args, np.log(raw))
    for k, v in zip(("p", "q", "v"), np.exp(lp)):
        ggf.params_[k] = v
    return ggf, raw, [float(x) for x in np.exp(lp)]


def case(name, summary, orders=None, as_of=None, days=True, penalizer=0.0):
    bgf, bg_raw, bg = bgnbd(summary, penalizer)
    ggf, gg_raw, gg = gamma_gamma(summary, penalizer)
    f, rec, T, m = (summary[c] for c in ("frequency", "recency", "T", "monetary_value"))
    out = {
        "name": name, "penalizer": penalizer,
        "customers": [[float(a), float(b), float(c), float(d)] for a, b, c, d in zip(f, rec, T, m)],
        "bgnbd": bg, "bgnbd_lifetimes": bg_raw, "gamma_gamma": gg, "gamma_gamma_lifetimes": gg_raw,
        "p_alive": [num(x) for x in bgf.conditional_probability_alive(f, rec, T)],
        "expected": {str(t): [num(x) for x in bgf.conditional_expected_number_of_purchases_up_to_time(t, f, rec, T)]
                     for t in (30, 90, 365)},
        "average_value": [num(x) for x in ggf.conditional_expected_average_profit(f, m)],
    }
    if days:
        clv = ggf.customer_lifetime_value(bgf, f, rec, T, m, time=12, discount_rate=0.01, freq="D")
        out["clv_12_months"] = [num(x) for x in clv]
    if orders is not None:
        out["orders"] = orders
        out["as_of"] = as_of
        # RFM: R = days since the last purchase day, F = purchase days, M = total value.
        totals = pd.DataFrame(orders, columns=["customer", "day", "value"]).groupby("customer")["value"].sum()
        values = {"recency": (T - rec).to_numpy(), "frequency": (f + 1).to_numpy(),
                  "monetary": totals.reindex(summary.index).to_numpy()}
        out["rfm"] = {
            "edges": {k: [float(x) for x in pd.Series(v).quantile([0.2, 0.4, 0.6, 0.8])] for k, v in values.items()},
            # M has no ties here: its scores are qcut's bins, 1-based.
            "monetary_scores": [int(c) + 1 for c in pd.qcut(values["monetary"], 5, labels=False)],
            "totals": [float(x) for x in values["monetary"]],
        }
    return out


def synthetic(rng, name, n, params, horizon, keep_orders):
    orders = simulate(rng, n, *params, horizon)
    df = pd.DataFrame(orders, columns=["customer", "day", "value"])
    df["date"] = EPOCH + pd.to_timedelta(df["day"], unit="D")
    summary = summary_data_from_transaction_data(
        df, "customer", "date", monetary_value_col="value",
        observation_period_end=EPOCH + pd.Timedelta(days=horizon), freq="D").sort_index()
    kept = [[int(c), int(d), float(v)] for c, d, v in orders] if keep_orders else None
    return case(name, summary, kept, horizon)


def main():
    rng = np.random.default_rng(2026)
    cases = [
        synthetic(rng, "synthetic 1500 customers, one year", 1500, (0.8, 40.0, 0.7, 2.5, 6.0, 4.0, 15.0), 365, False),
        synthetic(rng, "synthetic 400 customers, 200 days", 400, (1.5, 20.0, 1.4, 3.0, 3.0, 6.0, 40.0), 200, True),
    ]
    cd = load_cdnow_summary_data_with_monetary_value()
    cases.append(case("lifetimes CDNOW (weeks)", cd, days=False))
    cases.append(case("lifetimes CDNOW (weeks), penalizer 0.001", cd, days=False, penalizer=0.001))
    OUT.write_text(json.dumps({
        "generated_by": "scripts/lifetime_reference.py",
        "versions": {"lifetimes": lifetimes.__version__, "numpy": np.__version__, "pandas": pd.__version__,
                     "scipy": scipy.__version__, "autograd": autograd.__version__ if hasattr(autograd, "__version__") else "",
                     "python": platform.python_version()},
        "cases": cases,
    }, separators=(",", ":")) + "\n")
    for c in cases:
        print(c["name"], "bgnbd", c["bgnbd"], "lifetimes", c["bgnbd_lifetimes"])
        print("   gamma-gamma", c["gamma_gamma"], "lifetimes", c["gamma_gamma_lifetimes"])


if __name__ == "__main__":
    main()
