#!/usr/bin/env python3
"""Reference values for persona-core's campaign statistics (crates/persona-core/src/stats).

Writes crates/persona-core/tests/data/stats_reference.json, which
crates/persona-core/tests/stats_reference.rs checks the Rust implementation against (to 1e-6).
The JSON is committed, so CI needs no Python; rerun this script only when adding cases.

How to run (from the repository root):

    python3 -m venv /tmp/stats-ref
    /tmp/stats-ref/bin/pip install scipy statsmodels scikit-uplift
    /tmp/stats-ref/bin/python scripts/stats_reference.py

Generated with scipy 1.17, statsmodels 0.15, scikit-uplift 0.5.1 (the versions used are recorded
in the JSON). The output is deterministic (fixed seeds).

Reference functions:
  proportions   statsmodels proportions_ztest, confint_proportions_2indep (wald diff, log ratio)
  welch         scipy ttest_ind_from_stats(equal_var=False); CI = diff -/+ t.isf(alpha/2, df) * se
  welch_raw     scipy ttest_ind(a, b, equal_var=False) and its confidence_interval(); the Rust side
                only sees (n, sum, sum of squares) of each sample
  moments       numpy mean and var(ddof=1) from raw data; the Rust side sees (n, sum, sumsq)
  chisquare     scipy chisquare(obs, f_exp=fractions * sum(obs)), SRM flag p < 0.001
  ratio         a ratio of per-user sums (CTR = clicks/exposures) with users as the unit: the
                statsmodels WLS(c/e, 1, weights=e).fit(cov_type="HC1") estimate and variance
                (the delta method); z, p (scipy norm) and intervals from them. The Rust side
                only sees (n, sum c, sum e, sum c^2, sum e^2, sum c*e) of each arm
  uplift        sklift.metrics qini_auc_score, uplift_auc_score, uplift_at_k, qini_curve,
                uplift_curve
  reports       a whole campaign_report, each number computed independently from raw per-user
                data with the functions above

Undefined results (NaN or infinite in Python) are written as null: the Rust functions must return
None for them.
"""

import json
import math
import pathlib
import platform
import warnings

import numpy as np
import scipy
import sklift
import statsmodels
import statsmodels.api as sm
from scipy import stats
from sklift import metrics as skm
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

# sklearn (under sklift) deprecates helpers sklift still calls; the values are unaffected.
warnings.filterwarnings("ignore", category=FutureWarning)

OUT = (
    pathlib.Path(__file__).resolve().parent.parent
    / "crates" / "persona-core" / "tests" / "data" / "stats_reference.json"
)


def num(v):
    """A JSON number, or None for NaN/inf."""
    v = float(v)
    return v if math.isfinite(v) else None


def pair(lo, hi):
    lo, hi = num(lo), num(hi)
    return None if lo is None or hi is None else [lo, hi]


# ---------------------------------------------------------------- proportions


def proportion_case(name, x1, n1, x2, n2, alpha=0.05):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        z, p = proportions_ztest([x1, x2], [n1, n2])
        diff = confint_proportions_2indep(x1, n1, x2, n2, method="wald", compare="diff", alpha=alpha)
        try:
            ratio = confint_proportions_2indep(x1, n1, x2, n2, method="log", compare="ratio", alpha=alpha)
        except ZeroDivisionError:  # a zero count: log(0), 1/0 in the variance
            ratio = (float("nan"), float("nan"))
    ztest = {"z": num(z), "p_value": num(p)}
    if ztest["z"] is None or ztest["p_value"] is None:
        ztest = None
    return {
        "name": name,
        "x1": x1, "n1": n1, "x2": x2, "n2": n2, "alpha": alpha,
        "ztest": ztest,
        "diff_ci": pair(*diff),
        "ratio_ci": pair(*ratio),
    }


def proportion_cases():
    return [
        proportion_case("tiny", 3, 10, 1, 12),
        proportion_case("typical_ab", 530, 10_000, 480, 10_000),
        proportion_case("unequal_n", 45, 800, 310, 5_200),
        proportion_case("large_n_small_lift", 1_025_000, 10_000_000, 1_000_000, 10_000_000),
        proportion_case("strong_effect", 300, 1_000, 100, 1_000),
        proportion_case("alpha_0.01", 120, 1_500, 95, 1_480, alpha=0.01),
        proportion_case("alpha_0.2", 12, 90, 7, 95, alpha=0.2),
        proportion_case("treatment_all_converted", 20, 20, 15, 20),
        proportion_case("zero_treatment_conversions", 0, 500, 9, 480),
        proportion_case("zero_everywhere", 0, 1_000, 0, 1_000),
        proportion_case("all_converted_everywhere", 50, 50, 40, 40),
    ]


# ---------------------------------------------------------------- Welch


def welch_from_stats(name, m1, v1, n1, m2, v2, n2, alpha=0.05):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = stats.ttest_ind_from_stats(m1, math.sqrt(v1), n1, m2, math.sqrt(v2), n2, equal_var=False)
        vn1, vn2 = np.float64(v1) / n1, np.float64(v2) / n2
        df = (vn1 + vn2) ** 2 / (vn1 ** 2 / np.float64(n1 - 1) + vn2 ** 2 / np.float64(n2 - 1))
        se = np.sqrt(vn1 + vn2)
        half = stats.t.isf(alpha / 2, df) * se
    t, p = num(res.statistic), num(res.pvalue)
    defined = t is not None and p is not None and n1 > 1 and n2 > 1
    return {
        "name": name,
        "mean1": m1, "var1": v1, "n1": n1, "mean2": m2, "var2": v2, "n2": n2, "alpha": alpha,
        "ttest": {"t": t, "df": num(df), "p_value": p} if defined else None,
        "ci": pair(m1 - m2 - half, m1 - m2 + half) if defined else None,
    }


def welch_cases():
    return [
        welch_from_stats("scipy_doc_example", 0.2, 0.161073, 150, 0.225, 0.175251, 200),
        welch_from_stats("tiny", 5.0, 2.0, 2, 3.0, 1.5, 3),
        welch_from_stats("equal_variance", 10.4, 4.0, 60, 9.8, 4.0, 60),
        welch_from_stats("unequal_variance_unequal_n", 12.0, 40.0, 25, 9.0, 1.0, 400),
        welch_from_stats("large_n", 1.503, 25.0, 40_000_000, 1.5, 24.0, 60_000_000),
        welch_from_stats("one_zero_variance", 2.0, 0.0, 10, 2.5, 0.8, 8, alpha=0.1),
        welch_from_stats("alpha_0.01", 101.0, 400.0, 500, 98.0, 380.0, 520, alpha=0.01),
        welch_from_stats("single_value_is_undefined", 4.0, 0.0, 1, 3.0, 1.0, 30),
        welch_from_stats("zero_variances_are_undefined", 4.0, 0.0, 10, 3.0, 0.0, 30),
    ]


def sums(a):
    a = np.asarray(a, dtype=np.float64)
    return {"n": int(a.size), "sum": float(np.sum(a)), "sumsq": float(np.sum(a * a))}


def revenue_sample(rng, n, p_buy, mean_log, sd_log):
    """Zero-inflated log-normal revenue per user."""
    buys = rng.random(n) < p_buy
    return np.where(buys, rng.lognormal(mean_log, sd_log, n), 0.0).round(2)


def welch_raw(name, a, b, alpha=0.05):
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(1 - alpha)
    return {
        "name": name,
        "a": sums(a), "b": sums(b), "alpha": alpha,
        "ttest": {"t": num(res.statistic), "df": num(res.df), "p_value": num(res.pvalue)},
        "ci": pair(ci.low, ci.high),
    }


def welch_raw_cases(rng):
    return [
        welch_raw("normal_equal_var", rng.normal(10, 2, 50), rng.normal(10.8, 2, 50)),
        welch_raw("normal_unequal_var", rng.normal(5, 1, 30), rng.normal(6, 4, 300), alpha=0.1),
        welch_raw(
            "revenue_per_user_100k",
            revenue_sample(rng, 100_000, 0.05, 3.0, 1.0),
            revenue_sample(rng, 100_000, 0.052, 3.0, 1.0),
        ),
        welch_raw("integers_tiny", np.array([1.0, 4.0, 2.0]), np.array([7.0, 3.0, 9.0, 8.0])),
    ]


def moments_case(name, a):
    a = np.asarray(a, dtype=np.float64)
    return {
        "name": name,
        **sums(a),
        "mean": num(np.mean(a)),
        "variance": num(np.var(a, ddof=1)) if a.size > 1 else None,
    }


def moments_cases(rng):
    return [
        moments_case("small", [1.0, 2.0, 3.0, 4.0, 10.0]),
        moments_case("single", [42.5]),
        moments_case("constant", [0.1] * 1000),
        moments_case("large_mean_small_sd", rng.normal(1000.0, 0.5, 10_000)),
        moments_case("zero_inflated_revenue", revenue_sample(rng, 50_000, 0.03, 4.0, 1.2)),
    ]


# ---------------------------------------------------------------- chi-square / SRM


def chisquare_case(name, observed, fractions):
    observed = np.asarray(observed, dtype=np.int64)
    fractions = np.asarray(fractions, dtype=np.float64)
    fractions_normalised = fractions / fractions.sum()
    res = stats.chisquare(observed, f_exp=fractions_normalised * observed.sum())
    return {
        "name": name,
        "observed": [int(o) for o in observed],
        "fractions": [float(f) for f in fractions],
        "statistic": num(res.statistic),
        "df": len(observed) - 1,
        "p_value": num(res.pvalue),
        "mismatch": bool(res.pvalue < 0.001),
    }


def chisquare_cases():
    return [
        chisquare_case("balanced_ok", [10_012, 9_988], [0.5, 0.5]),
        chisquare_case("balanced_mismatch", [10_400, 9_600], [0.5, 0.5]),
        chisquare_case("three_arms_planned_ok", [2_480, 2_530, 4_990], [0.25, 0.25, 0.5]),
        chisquare_case("three_arms_planned_mismatch", [2_700, 2_530, 4_770], [0.25, 0.25, 0.5]),
        chisquare_case("weights_not_fractions", [310, 290, 640], [1, 1, 2]),
        chisquare_case("thirds", [334, 333, 333], [1 / 3, 1 / 3, 1 / 3]),
        chisquare_case("tiny", [3, 7], [0.5, 0.5]),
        chisquare_case("huge_small_skew", [50_050_000, 49_950_000], [0.5, 0.5]),
        chisquare_case("extreme_mismatch", [90_000, 10_000], [0.5, 0.5]),
        chisquare_case("ninety_ten_ok", [9_020, 980], [0.9, 0.1]),
    ]


# ---------------------------------------------------------------- uplift


def uplift_case(name, y, uplift, treatment, with_curves):
    y = np.asarray(y, dtype=np.int64)
    uplift = np.asarray(uplift, dtype=np.float64)
    treatment = np.asarray(treatment, dtype=np.int64)
    case = {
        "name": name,
        "y_true": [int(v) for v in y],
        "uplift": [float(v) for v in uplift],
        "treatment": [int(v) for v in treatment],
        "qini_auc_score": num(skm.qini_auc_score(y, uplift, treatment)),
        "uplift_auc_score": num(skm.uplift_auc_score(y, uplift, treatment)),
        "uplift_at_k": [],
    }
    for strategy in ("overall", "by_group"):
        for k in (0.1, 0.3, 0.5, 0.77):
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                value = skm.uplift_at_k(y, uplift, treatment, strategy=strategy, k=k)
            case["uplift_at_k"].append({"k": k, "strategy": strategy, "value": num(value)})
    if with_curves:
        for curve in ("qini_curve", "uplift_curve"):
            x, v = getattr(skm, curve)(y, uplift, treatment)
            case[curve] = {"x": [float(a) for a in x], "y": [float(b) for b in v]}
    return case


def uplift_cases(rng):
    cases = []
    # Hand-made, with ties at 0.8 and 0.1 whose order within the tie matters for uplift_at_k.
    cases.append(uplift_case(
        "hand_made_ties",
        [1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0],
        [0.9, 0.8, 0.8, 0.3, 0.1, 0.1, 0.5, 0.8, 0.2, 0.1, 0.3, 0.9],
        [1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 1, 0],
        True,
    ))

    def synthetic(n, decimals, control_share, base, lift_scale, noise):
        treatment = (rng.random(n) >= control_share).astype(int)
        true_uplift = rng.normal(0.0, lift_scale, n)
        p = np.clip(base + treatment * true_uplift, 0.01, 0.99)
        y = (rng.random(n) < p).astype(int)
        score = (true_uplift + rng.normal(0.0, noise, n)).round(decimals)
        return y, score, treatment

    y, s, t = synthetic(200, 1, 0.5, 0.3, 0.15, 0.1)
    cases.append(uplift_case("n200_scores_one_decimal", y, s, t, True))
    y, s, t = synthetic(2_000, 2, 0.5, 0.2, 0.1, 0.05)
    cases.append(uplift_case("n2000_scores_two_decimals", y, s, t, False))
    y, s, t = synthetic(1_000, 2, 0.2, 0.25, 0.1, 0.05)
    cases.append(uplift_case("n1000_unbalanced_20pct_control", y, s, t, False))
    y, s, t = synthetic(500, 0, 0.5, 0.4, 0.2, 1.0)
    s = np.clip(s, -2, 2)  # five distinct scores: massive ties
    cases.append(uplift_case("n500_five_distinct_scores", y, s, t, True))
    y, s, t = synthetic(300, 3, 0.5, 0.3, 0.1, 0.3)
    cases.append(uplift_case("n300_uninformative_model", y, -s, t, False))
    return cases


# ---------------------------------------------------------------- ratio metrics (delta method)


def ratio_moments(c, e):
    c, e = np.asarray(c, dtype=np.float64), np.asarray(e, dtype=np.float64)
    return {
        "n": int(c.size), "num_sum": float(c.sum()), "den_sum": float(e.sum()),
        "num_sumsq": float((c * c).sum()), "den_sumsq": float((e * e).sum()), "cross_sum": float((c * e).sum()),
    }


def ratio_fit(c, e):
    """R = sum c / sum e and its HC1 (cluster-robust, users as clusters) variance."""
    c, e = np.asarray(c, dtype=np.float64), np.asarray(e, dtype=np.float64)
    fit = sm.WLS(c / e, np.ones_like(e), weights=e).fit(cov_type="HC1")
    return float(fit.params[0]), float(fit.bse[0]) ** 2


def ratio_comparison(c_t, e_t, c_c, e_c, alpha):
    rt, vt = ratio_fit(c_t, e_t)
    rc, vc = ratio_fit(c_c, e_c)
    se = math.sqrt(vt + vc)
    crit = stats.norm.isf(alpha / 2)
    z = (rt - rc) / se if se > 0 else float("nan")
    p = 2 * stats.norm.sf(abs(z))
    log_se = math.sqrt(vt / rt ** 2 + vc / rc ** 2) if rt > 0 and rc > 0 else float("nan")
    log_ratio = math.log(rt / rc) if rt > 0 and rc > 0 else float("nan")
    return {
        "treatment_rate": rt, "control_rate": rc, "var_t": vt, "var_c": vc,
        "absolute_lift": rt - rc,
        "absolute_lift_ci": pair(rt - rc - crit * se, rt - rc + crit * se),
        "relative_lift": rt / rc - 1 if rc > 0 else None,
        "relative_lift_ci": pair(math.exp(log_ratio - crit * log_se) - 1, math.exp(log_ratio + crit * log_se) - 1),
        "z": num(z),
        "p_value": num(p),
        "significant": bool(p < alpha),
    }


def ratio_case(name, c_t, e_t, c_c, e_c, alpha=0.05):
    return {
        "name": name, "alpha": alpha,
        "treatment": ratio_moments(c_t, e_t), "control": ratio_moments(c_c, e_c),
        **ratio_comparison(c_t, e_t, c_c, e_c, alpha),
    }


def clustered_clicks(rng, n, exposures_mean, ctr, concentration):
    """Users with their own click propensity (Beta with the given mean and concentration)."""
    e = 1 + rng.poisson(exposures_mean - 1, n)
    p = rng.beta(ctr * concentration, (1 - ctr) * concentration, n)
    return rng.binomial(e, p), e


def ratio_cases(rng):
    cases = [ratio_case("tiny", [1, 2, 0, 3], [4, 3, 6, 5], [0, 1, 0, 1], [4, 3, 6, 7])]
    for name, n, em, ctr_t, ctr_c, conc, alpha in [
        ("typical_ctr_10_exposures", 5_000, 10, 0.052, 0.050, 20.0, 0.05),
        ("clustered_clicks_30_exposures", 2_000, 30, 0.08, 0.07, 2.0, 0.05),
        ("one_exposure_each_is_binomial_like", 3_000, 1, 0.10, 0.09, 1e6, 0.1),
        ("large_arms", 200_000, 4, 0.031, 0.030, 10.0, 0.01),
    ]:
        c_t, e_t = clustered_clicks(rng, n, em, ctr_t, conc)
        c_c, e_c = clustered_clicks(rng, n, em, ctr_c, conc)
        cases.append(ratio_case(name, c_t, e_t, c_c, e_c, alpha))
    return cases


# ---------------------------------------------------------------- whole reports


def arm_from_users(name, exposures_per_user, clicks, clicked, conversions, converted, revenue, cost):
    """Per-user arrays -> the ArmAggregate the SQL layer would produce."""
    return {
        "arm": name,
        "users_exposed": int(exposures_per_user.size),
        "exposures": int(exposures_per_user.sum()),
        "clicks": int(clicks.sum()),
        "users_clicked": int(clicked.sum()),
        "conversions": int(conversions.sum()),
        "users_converted": int(converted.sum()),
        "revenue": float(revenue.sum()),
        "revenue_sumsq": float((revenue * revenue).sum()),
        "cost": cost,
        "ctr_moments": ratio_moments(clicks, exposures_per_user),
    }


def simulate_arm(rng, name, n, ctr, conv, cost):
    exposures = 1 + rng.poisson(2.0, n)
    clicks = rng.binomial(exposures, ctr)
    clicked = clicks > 0
    converted = rng.random(n) < conv
    conversions = np.where(converted, 1 + rng.poisson(0.3, n), 0)
    revenue = np.where(converted, rng.lognormal(3.2, 0.8, n), 0.0).round(2)
    return arm_from_users(name, exposures, clicks, clicked, conversions, converted, revenue, cost), {
        "exposures": exposures, "clicks": clicks, "converted": converted, "revenue": revenue,
    }


def expected_comparison(arm, control, raw_arm, raw_control, alpha):
    def proportions(x1, n1, x2, n2):
        c = proportion_case("", x1, n1, x2, n2, alpha)
        p1, p2 = x1 / n1, x2 / n2
        rel = None if c["ratio_ci"] is None else [c["ratio_ci"][0] - 1, c["ratio_ci"][1] - 1]
        return {
            "absolute_lift": p1 - p2,
            "absolute_lift_ci": c["diff_ci"],
            "relative_lift": p1 / p2 - 1,
            "relative_lift_ci": rel,
            "z": c["ztest"]["z"],
            "p_value": c["ztest"]["p_value"],
            "significant": c["ztest"]["p_value"] < alpha,
        }

    w = welch_raw("", raw_arm["revenue"], raw_control["revenue"], alpha)
    diff = float(np.mean(raw_arm["revenue"]) - np.mean(raw_control["revenue"]))
    return {
        "arm": arm["arm"],
        "conversion_rate": proportions(
            arm["users_converted"], arm["users_exposed"],
            control["users_converted"], control["users_exposed"],
        ),
        # Per-user sums are given: users are the unit of the CTR test (delta method).
        "ctr": {
            k: v for k, v in ratio_comparison(
                raw_arm["clicks"], raw_arm["exposures"], raw_control["clicks"], raw_control["exposures"], alpha,
            ).items() if k not in ("var_t", "var_c")
        } | {"test": "delta_method"},
        "revenue_per_user": {
            "difference": diff,
            "difference_ci": w["ci"],
            "relative_difference": diff / float(np.mean(raw_control["revenue"])),
            "t": w["ttest"]["t"],
            "df": w["ttest"]["df"],
            "p_value": w["ttest"]["p_value"],
            "significant": w["ttest"]["p_value"] < alpha,
        },
    }


def report_case(rng, name, specs, control, planned_split, alpha):
    arms, raw = [], {}
    for arm_name, n, ctr, conv, cost in specs:
        arm, r = simulate_arm(rng, arm_name, n, ctr, conv, cost)
        arms.append(arm)
        raw[arm_name] = r
    by_name = {a["arm"]: a for a in arms}
    control_name = control if control is not None else "control"
    expected_arms = []
    for a in arms:
        r = raw[a["arm"]]
        cost = a["cost"]
        expected_arms.append({
            "arm": a["arm"],
            "ctr": a["clicks"] / a["exposures"],
            "conversion_rate": a["users_converted"] / a["users_exposed"],
            "revenue_per_user": float(np.mean(r["revenue"])),
            "revenue_per_user_sd": float(np.std(r["revenue"], ddof=1)),
            "roi": None if not cost else (a["revenue"] - cost) / cost,
            "roas": None if not cost else a["revenue"] / cost,
        })
    comparisons = [
        expected_comparison(a, by_name[control_name], raw[a["arm"]], raw[control_name], alpha)
        for a in arms if a["arm"] != control_name
    ]
    if planned_split is None:
        names, weights = [a["arm"] for a in arms], [1.0] * len(arms)
    else:
        names, weights = [n for n, _ in planned_split], [w for _, w in planned_split]
    srm = chisquare_case("", [by_name[n]["users_exposed"] for n in names], weights)
    return {
        "name": name,
        "input": {
            "arms": arms,
            "control_arm": control,
            "planned_split": planned_split,
            "alpha": alpha,
        },
        "expected": {
            "control_arm": control_name,
            "arms": expected_arms,
            "comparisons": comparisons,
            "srm": {
                "chi2": srm["statistic"],
                "df": srm["df"],
                "p_value": srm["p_value"],
                "mismatch": srm["mismatch"],
                "expected_fractions": [w / sum(weights) for w in weights],
            },
        },
    }


def report_cases(rng):
    return [
        report_case(
            rng, "two_arms_default_control",
            [("control", 20_000, 0.05, 0.030, 1500.0), ("new_banner", 20_300, 0.055, 0.034, 1600.0)],
            None, None, 0.05,
        ),
        report_case(
            rng, "three_arms_planned_split_mismatch",
            [("holdout", 5_000, 0.04, 0.020, None), ("email", 9_300, 0.06, 0.026, 800.0),
             ("push", 11_200, 0.045, 0.022, 300.0)],
            "holdout", [["holdout", 0.2], ["email", 0.4], ["push", 0.4]], 0.1,
        ),
    ]


def main():
    rng = np.random.default_rng(20240611)
    data = {
        "generated_by": "scripts/stats_reference.py",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "statsmodels": statsmodels.__version__,
            "scikit-uplift": sklift.__version__,
        },
        "proportions": proportion_cases(),
        "welch": welch_cases(),
        "welch_raw": welch_raw_cases(rng),
        "moments": moments_cases(rng),
        "chisquare": chisquare_cases(),
        "uplift": uplift_cases(rng),
        "reports": report_cases(rng),
        "ratio": ratio_cases(rng),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")
    counts = {k: len(v) for k, v in data.items() if isinstance(v, list)}
    print(f"wrote {OUT} ({sum(counts.values())} cases: {counts})")


if __name__ == "__main__":
    main()
