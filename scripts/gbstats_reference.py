#!/usr/bin/env python3
"""Reference values for persona-core's GrowthBook-equivalent statistics and power calculations
(crates/persona-core/src/stats/effect.rs and power.rs).

Writes crates/persona-core/tests/data/gbstats_reference.json, which
crates/persona-core/tests/gbstats_reference.rs checks the Rust implementation against (to 1e-6).
The JSON is committed, so CI needs no Python; rerun this script only when adding cases.

This is a separate script from stats_reference.py because gbstats pins its own pandas, pydantic
and scipy: the two reference environments are kept apart so that regenerating one cannot move
the other's values.

How to run (from the repository root):

    python3 -m venv /tmp/gbstats-ref
    /tmp/gbstats-ref/bin/pip install gbstats==0.8.0 statsmodels
    /tmp/gbstats-ref/bin/python scripts/gbstats_reference.py

Reference functions (GrowthBook's statistics engine, gbstats 0.8.0):
  ttest       gbstats.frequentist.tests.TwoSidedTTest (absolute and relative differences)
  sequential  gbstats.frequentist.tests.SequentialTwoSidedTTest (tuning 5000 and others)
  bayesian    gbstats.bayesian.tests.EffectBayesianABTest, improper prior and proper
              GaussianPrior(mean, variance, proper=True) with prior_type equal to the difference
  theta       gbstats.models.statistics.compute_theta (CUPED, Deng et al. 2013)
  power       statsmodels.stats.power.NormalIndPower().power, solved for the users per arm or
              the effect size with scipy brentq (xtol 1e-15), with
              statsmodels.stats.proportion.proportion_effectsize for rates, alpha divided by the
              number of comparisons (arms - 1). Not NormalIndPower().solve_power itself: its
              solver stops early (its effect sizes reach the power only to ~3e-5), while the
              Rust side solves to full precision.

Statistics are built from simulated per-user data (fixed seeds) the way the SQL layer builds
them: proportions (users converted of users exposed), means (revenue per user, skewed, many
zeros), ratios (clicks per exposure with users as the unit) and CUPED-adjusted proportions and
means with a pre-period covariate. Where gbstats returns its uninformative default (an
error_message), the expected value is {"undefined": <message>}.
"""

import copy
import json
import math
import pathlib
import platform
import warnings

import numpy as np
import scipy
import statsmodels
from scipy.optimize import brentq
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    ProportionStatistic,
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    compute_theta,
)
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

OUT = (
    pathlib.Path(__file__).resolve().parent.parent
    / "crates" / "persona-core" / "tests" / "data" / "gbstats_reference.json"
)


def num(v):
    v = float(v)
    return v if math.isfinite(v) else None


# ------------------------------------------------------------------ statistics from user data


def proportion(x):
    x = np.asarray(x, dtype=float)
    return {"type": "proportion", "n": int(len(x)), "sum": float(x.sum())}


def mean(x):
    x = np.asarray(x, dtype=float)
    return {"type": "mean", "n": int(len(x)), "sum": float(x.sum()), "sum_squares": float((x * x).sum())}


def ratio(m, d):
    m, d = np.asarray(m, dtype=float), np.asarray(d, dtype=float)
    return {
        "type": "ratio", "n": int(len(m)),
        "m_sum": float(m.sum()), "m_sum_squares": float((m * m).sum()),
        "d_sum": float(d.sum()), "d_sum_squares": float((d * d).sum()),
        "m_d_sum_of_products": float((m * d).sum()),
    }


def base(s):
    s = dict(s)
    s.pop("n")
    return s


def adjusted(post, pre):
    post, pre = np.asarray(post, dtype=float), np.asarray(pre, dtype=float)
    post_s = proportion(post) if set(np.unique(post)) <= {0.0, 1.0} else mean(post)
    pre_s = proportion(pre) if set(np.unique(pre)) <= {0.0, 1.0} else mean(pre)
    return {
        "type": "adjusted", "n": int(len(post)), "post": base(post_s), "pre": base(pre_s),
        "post_pre_sum_of_products": float((post * pre).sum()), "theta": 0.0,
    }


def to_gbstats(s):
    """The gbstats statistic object for a JSON statistic."""
    t = s["type"]
    if t == "proportion":
        return ProportionStatistic(n=s["n"], sum=s["sum"])
    if t == "mean":
        return SampleMeanStatistic(n=s["n"], sum=s["sum"], sum_squares=s["sum_squares"])
    if t == "ratio":
        n = s["n"]
        return RatioStatistic(
            n=n,
            m_statistic=SampleMeanStatistic(n=n, sum=s["m_sum"], sum_squares=s["m_sum_squares"]),
            d_statistic=SampleMeanStatistic(n=n, sum=s["d_sum"], sum_squares=s["d_sum_squares"]),
            m_d_sum_of_products=s["m_d_sum_of_products"],
        )
    if t == "adjusted":
        n = s["n"]
        return RegressionAdjustedStatistic(
            n=n,
            post_statistic=to_gbstats(dict(s["post"], n=n)),
            pre_statistic=to_gbstats(dict(s["pre"], n=n)),
            post_pre_sum_of_products=s["post_pre_sum_of_products"],
            theta=s["theta"],
        )
    raise ValueError(t)


def result(r, bayes=False):
    if r.error_message:
        return {"undefined": r.error_message}
    out = {
        "effect": num(r.expected), "se": num(r.uplift.stddev),
        "ci": [num(r.ci[0]), num(r.ci[1])],
    }
    if bayes:
        out.update(chance_to_win=num(r.chance_to_win), risk=[num(r.risk[0]), num(r.risk[1])])
    else:
        out["p_value"] = num(r.p_value)
    return out


def pairs(rng):
    """(name, control, treatment) statistics from simulated user data."""
    out = []
    for n_a, n_b, p_a, p_b in [(1000, 1000, 0.05, 0.06), (5000, 4800, 0.1, 0.1), (300, 320, 0.2, 0.3),
                               (80000, 80500, 0.031, 0.033), (12, 15, 0.25, 0.4)]:
        a, b = rng.random(n_a) < p_a, rng.random(n_b) < p_b
        out.append((f"proportion {n_a}/{n_b}", proportion(a), proportion(b)))
    for n_a, n_b, lift in [(1000, 1000, 1.1), (4000, 4100, 1.0), (200, 180, 1.5), (60000, 59000, 1.03)]:
        def revenue(n, f):
            buys = rng.random(n) < 0.2
            return np.where(buys, rng.lognormal(3.0, 1.0, n) * f, 0.0).round(2)
        out.append((f"mean {n_a}/{n_b}", mean(revenue(n_a, 1.0)), mean(revenue(n_b, lift))))
    for n_a, n_b in [(1500, 1500), (300, 250)]:
        def clicks(n, rate):
            e = rng.poisson(3.0, n) + 1
            return rng.binomial(e, rate), e
        ca, ea = clicks(n_a, 0.1)
        cb, eb = clicks(n_b, 0.12)
        out.append((f"ratio {n_a}/{n_b}", ratio(ca, ea), ratio(cb, eb)))
    # CUPED: a pre-period value correlated with the post-period one.
    for n_a, n_b, kind in [(2000, 2100, "mean"), (500, 450, "mean"), (3000, 3000, "proportion"),
                           (1000, 1200, "proportion on mean")]:
        def user(n, f):
            skill = rng.gamma(2.0, 1.0, n)
            if kind == "mean":
                pre = np.where(rng.random(n) < 0.4, skill * 10, 0.0).round(2)
                post = np.where(rng.random(n) < 0.4, skill * 10 * f + rng.normal(0, 3, n), 0.0).round(2)
            elif kind == "proportion":
                pre = (rng.random(n) < 0.05 * skill).astype(float)
                post = (rng.random(n) < 0.05 * skill * f).astype(float)
            else:
                pre = (skill * 7).round(1)
                post = (rng.random(n) < 0.05 * skill * f).astype(float)
            return post, pre
        pa, qa = user(n_a, 1.0)
        pb, qb = user(n_b, 1.08)
        out.append((f"cuped {kind} {n_a}/{n_b}", adjusted(pa, qa), adjusted(pb, qb)))
    # Degenerate inputs gbstats refuses.
    out.append(("zero baseline", proportion(np.zeros(100)), proportion(rng.random(100) < 0.1)))
    out.append(("zero variance", proportion(np.ones(50)), proportion(rng.random(60) < 0.5)))
    out.append(("one user", mean([3.0]), mean([1.0, 2.0, 5.0])))
    out.append(("no users", proportion([]), proportion(rng.random(20) < 0.5)))
    out.append(("cuped constant pre", adjusted(rng.random(100) < 0.2, np.ones(100)),
                adjusted(rng.random(90) < 0.3, np.ones(90))))
    return out


def stat_cases():
    rng = np.random.default_rng(13)
    cases = []
    for name, a, b in pairs(rng):
        if a["type"] == "adjusted":
            cases.append({"kind": "theta", "name": name, "a": a, "b": b,
                          "expected": num(compute_theta(to_gbstats(a), to_gbstats(b)))})
        for difference in ["absolute", "relative"]:
            for alpha in [0.05, 0.1]:
                common = {"name": name, "difference": difference, "alpha": alpha, "a": a, "b": b}
                r = TwoSidedTTest(to_gbstats(a), to_gbstats(b),
                                  FrequentistConfig(difference_type=difference, alpha=alpha)).compute_result()
                cases.append(dict(common, kind="ttest", expected=result(r)))
                for tuning in ([5000, 500, 100000] if alpha == 0.05 else [5000]):
                    r = SequentialTwoSidedTTest(
                        to_gbstats(a), to_gbstats(b),
                        SequentialConfig(difference_type=difference, alpha=alpha,
                                         sequential_tuning_parameter=tuning)).compute_result()
                    cases.append(dict(common, kind="sequential", tuning=tuning, expected=result(r)))
                priors = [None]
                if alpha == 0.05:
                    priors += [{"mean": 0.0, "variance": 0.01 if difference == "relative" else 1e-4},
                               {"mean": 0.02, "variance": 0.3 if difference == "relative" else 0.5}]
                for prior in priors:
                    g = (GaussianPrior(mean=prior["mean"], variance=prior["variance"], proper=True)
                         if prior else GaussianPrior())
                    r = EffectBayesianABTest(
                        to_gbstats(a), to_gbstats(b),
                        EffectBayesianConfig(difference_type=difference, alpha=alpha,
                                             prior_effect=g, prior_type=difference)).compute_result()
                    cases.append(dict(common, kind="bayesian", prior=prior, expected=result(r, bayes=True)))
    return cases


# ------------------------------------------------------------------ power


def power_cases():
    cases = []
    solver = NormalIndPower()
    setups = [
        ({"metric": "proportion", "rate": 0.05}, [0.01, 0.005, -0.01]),
        ({"metric": "proportion", "rate": 0.3}, [0.03, 0.1]),
        ({"metric": "proportion", "rate": 0.5}, [0.02]),
        ({"metric": "mean", "mean": 20.0, "sd": 45.0}, [1.0, 5.0, -2.0]),
        ({"metric": "mean", "mean": 0.0, "sd": 1.0}, [0.1]),
    ]
    for baseline, mdes in setups:
        for mde in mdes:
            for alpha, power, arms in [(0.05, 0.8, 2), (0.05, 0.9, 3), (0.01, 0.8, 4)]:
                per = alpha / (arms - 1)
                if baseline["metric"] == "proportion":
                    h = proportion_effectsize(baseline["rate"] + mde, baseline["rate"])
                else:
                    h = mde / baseline["sd"]
                n = brentq(lambda n: solver.power(abs(h), n, per, ratio=1.0) - power, 1.0, 1e12,
                           xtol=1e-15, rtol=1e-15)
                cases.append({"kind": "users", "baseline": baseline, "mde": mde, "alpha": alpha,
                              "power": power, "arms": arms, "effect_size": num(h), "users_per_arm": num(n)})
    for baseline, users in [({"metric": "proportion", "rate": 0.05}, 5000), ({"metric": "proportion", "rate": 0.2}, 300),
                            ({"metric": "mean", "mean": 20.0, "sd": 45.0}, 2000)]:
        for alpha, power, arms in [(0.05, 0.8, 2), (0.1, 0.9, 3)]:
            per = alpha / (arms - 1)
            h = brentq(lambda h: solver.power(h, users, per, ratio=1.0) - power, 1e-9, 10.0,
                       xtol=1e-15, rtol=1e-15)
            if baseline["metric"] == "proportion":
                p = baseline["rate"]
                mde = math.sin(math.asin(math.sqrt(p)) + h / 2) ** 2 - p
            else:
                mde = h * baseline["sd"]
            cases.append({"kind": "mde", "baseline": baseline, "users": users, "alpha": alpha,
                          "power": power, "arms": arms, "effect_size": num(h), "mde": num(mde)})
    return cases


def main():
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        stats_cases = stat_cases()
        power = power_cases()
    import importlib.metadata as md
    OUT.write_text(json.dumps({
        "generated_by": "scripts/gbstats_reference.py",
        "versions": {"gbstats": md.version("gbstats"), "statsmodels": statsmodels.__version__,
                     "scipy": scipy.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "statistics": stats_cases,
        "power": power,
    }, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {OUT}: {len(stats_cases)} statistics cases, {len(power)} power cases")


if __name__ == "__main__":
    main()
