"""Generate spec/stats/cases.json: golden cases for the switchyard-stats engine.

Every expected number comes from a reference implementation, never from the
engine under test:
  * gbstats 0.8.0 (GrowthBook): frequentist, sequential and Bayesian tests,
    ratio and regression-adjusted (CUPED) statistics, SRM;
  * scipy: Welch t-test from summary statistics (cross-check and the absolute
    effect where gbstats refuses a zero baseline mean), chi-square statistic;
  * statsmodels: Holm and Benjamini-Hochberg adjusted p-values.

Inputs are sufficient statistics of seeded simulated data, written to the JSON as
literals. Re-run with `python3 spec/stats/generate.py` (pip install scipy
statsmodels gbstats==0.8.0); the output must not change.
"""

import json
import math
import os

import numpy as np
import scipy.stats
from statsmodels.stats.multitest import multipletests

from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
from gbstats.frequentist.tests import (
    FrequentistConfig,
    OneSidedTreatmentGreaterTTest,
    OneSidedTreatmentLesserTTest,
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
from gbstats.utils import check_srm

RNG = np.random.default_rng(20240611)


# ---------------------------------------------------------------- input data


def mean_data(n, mu, sd):
    x = RNG.normal(mu, sd, n)
    return {"type": "mean", "n": n, "sum": float(x.sum()), "sum_squares": float((x * x).sum())}


def proportion_data(n, p):
    return {"type": "proportion", "n": n, "successes": float(RNG.binomial(n, p))}


def ratio_data(n, mu_num, mu_den):
    d = RNG.poisson(mu_den, n).astype(float) + 1.0
    m = d * RNG.gamma(2.0, mu_num / 2.0, n)
    return {
        "type": "ratio",
        "n": n,
        "numerator": {"type": "mean", "sum": float(m.sum()), "sum_squares": float((m * m).sum())},
        "denominator": {"type": "mean", "sum": float(d.sum()), "sum_squares": float((d * d).sum())},
        "sum_products": float((m * d).sum()),
    }


def cuped_data(n, mu, sd, rho, lift=0.0):
    pre = RNG.normal(mu, sd, n)
    post = mu + lift + rho * (pre - mu) + RNG.normal(0, sd * math.sqrt(1 - rho * rho), n)
    return {
        "type": "regression_adjusted",
        "n": n,
        "post": {"type": "mean", "sum": float(post.sum()), "sum_squares": float((post * post).sum())},
        "pre": {"type": "mean", "sum": float(pre.sum()), "sum_squares": float((pre * pre).sum())},
        "sum_products": float((post * pre).sum()),
    }


def cuped_binary_data(n, p_pre, p_stay, p_new):
    pre = RNG.random(n) < p_pre
    post = np.where(pre, RNG.random(n) < p_stay, RNG.random(n) < p_new)
    return {
        "type": "regression_adjusted",
        "n": n,
        "post": {"type": "proportion", "successes": float(post.sum())},
        "pre": {"type": "proportion", "successes": float(pre.sum())},
        "sum_products": float((post & pre).sum()),
    }


# ------------------------------------------------------------- to gbstats


def component(c, n):
    if c["type"] == "mean":
        return SampleMeanStatistic(n=n, sum=c["sum"], sum_squares=c["sum_squares"])
    return ProportionStatistic(n=n, sum=c["successes"])


def gb_stat(d):
    t = d["type"]
    if t == "mean":
        return SampleMeanStatistic(n=d["n"], sum=d["sum"], sum_squares=d["sum_squares"])
    if t == "proportion":
        return ProportionStatistic(n=d["n"], sum=d["successes"])
    if t == "ratio":
        return RatioStatistic(
            n=d["n"],
            m_statistic=component(d["numerator"], d["n"]),
            d_statistic=component(d["denominator"], d["n"]),
            m_d_sum_of_products=d["sum_products"],
        )
    return RegressionAdjustedStatistic(
        n=d["n"],
        post_statistic=component(d["post"], d["n"]),
        pre_statistic=component(d["pre"], d["n"]),
        post_pre_sum_of_products=d["sum_products"],
        theta=0,
    )


# ------------------------------------------------------ expected outputs


def num(x):
    """Infinite interval ends are null in the engine's JSON."""
    x = float(x)
    return x if math.isfinite(x) else None


def error_code(message, a, b, difference):
    """The engine's stable code for a gbstats error message (see docs/statistics.md).
    The engine checks, in order: no units, one unit, zero baseline mean (relative
    effects only), zero variance."""
    if message is None:
        return None
    if a.n == 0 or b.n == 0:
        return "NO_UNITS"
    if a.n < 2 or b.n < 2:
        return "TOO_FEW_UNITS"
    if message == "ZERO_NEGATIVE_BASELINE_VARIATION" and difference == "absolute":
        return "ZERO_VARIANCE"
    return {
        "ZERO_NEGATIVE_VARIANCE": "ZERO_VARIANCE",
        "ZERO_NEGATIVE_BASELINE_VARIATION": "ZERO_BASELINE_MEAN",
        "NO_UNITS_IN_VARIATION": "NO_UNITS",
    }[message]


def welch_scipy(a, b):
    """scipy's Welch test on the absolute difference (same result as gbstats)."""
    va, vb = a.variance, b.variance
    res = scipy.stats.ttest_ind_from_stats(
        b.mean, math.sqrt(vb), b.n, a.mean, math.sqrt(va), a.n, equal_var=False
    )
    se = math.sqrt(va / a.n + vb / b.n)
    dof = (va / a.n + vb / b.n) ** 2 / (va**2 / (a.n**2 * (a.n - 1)) + vb**2 / (b.n**2 * (b.n - 1)))
    return res, se, dof


def frequentist_effect(settings, a, b, difference):
    alpha = settings.get("alpha", 0.05)
    alternative = settings.get("alternative", "two_sided")
    if settings.get("sequential"):
        cfg = SequentialConfig(
            alpha=alpha,
            difference_type=difference,
            sequential_tuning_parameter=settings.get("sequential_tuning", 5000),
        )
        test = SequentialTwoSidedTTest(a, b, cfg)
    else:
        cfg = FrequentistConfig(alpha=alpha, difference_type=difference)
        cls = {
            "two_sided": TwoSidedTTest,
            "greater": OneSidedTreatmentGreaterTTest,
            "less": OneSidedTreatmentLesserTTest,
        }[alternative]
        test = cls(a, b, cfg)
    r = test.compute_result()
    code = error_code(r.error_message, a, b, difference)
    if r.error_message == "ZERO_NEGATIVE_BASELINE_VARIATION" and difference == "absolute" and a.variance > 0 and b.variance > 0:
        # gbstats refuses any test when the baseline mean is 0; the absolute
        # difference is still well defined, so take scipy's Welch test for it.
        res, se, dof = welch_scipy(a, b)
        width = scipy.stats.t.ppf(1 - alpha / 2, dof) * se
        est = b.mean - a.mean
        return {"estimate": est, "stddev": se, "ci": {"lower": est - width, "upper": est + width}, "p_value": float(res.pvalue)}
    ci = [num(r.ci[0]), num(r.ci[1])]
    if alternative == "less" and code is None and not settings.get("sequential"):
        # gbstats 0.8 returns [-inf, estimate - width] for this test; the upper
        # bound of a one-sided "less" interval is estimate + width.
        width = r.expected - r.ci[1]
        ci = [None, r.expected + width]
    out = {
        "estimate": r.expected,
        "stddev": r.uplift.stddev,
        "ci": {"lower": ci[0], "upper": ci[1]},
        "p_value": float(r.p_value),
    }
    if code:
        out["error"] = code
    elif difference == "absolute" and alternative == "two_sided" and not settings.get("sequential") \
            and isinstance(a, SampleMeanStatistic) and isinstance(b, SampleMeanStatistic):
        res, _, _ = welch_scipy(a, b)
        assert abs(res.pvalue - r.p_value) < 1e-9, (res.pvalue, r.p_value)
    return out


def bayesian_effect(settings, metric, a, b, difference):
    prior = metric.get("prior", settings.get("prior"))
    cfg = EffectBayesianConfig(
        alpha=settings.get("alpha", 0.05),
        difference_type=difference,
        inverse=metric.get("inverse", False),
        prior_type=(prior or {}).get("scale", "relative"),
        prior_effect=GaussianPrior(
            mean=(prior or {}).get("mean", 0.0),
            variance=(prior or {}).get("variance", 1.0),
            proper=prior is not None,
        ),
    )
    r = EffectBayesianABTest(a, b, cfg).compute_result()
    out = {
        "estimate": r.expected,
        "stddev": r.uplift.stddev,
        "ci": {"lower": r.ci[0], "upper": r.ci[1]},
        "chance_to_win": float(r.chance_to_win),
        "risk": {"baseline": r.risk[0], "variation": r.risk[1]},
    }
    code = error_code(r.error_message, a, b, difference)
    if code:
        out["error"] = code
    return out


def expected_for(doc):
    settings = doc.get("settings", {})
    base = settings.get("baseline", 0)
    engine = settings.get("engine", "frequentist")
    metrics = []
    for metric in doc["metrics"]:
        variations = []
        for i, v in enumerate(doc["variations"]):
            a, b = gb_stat(metric["data"][base]), gb_stat(metric["data"][i])
            row = {"id": v["id"], "units": b.n, "mean": float(b.unadjusted_mean), "variance": float(
                b.post_statistic.variance if isinstance(b, RegressionAdjustedStatistic) else b.variance)}
            if i != base:
                comp = {"baseline": doc["variations"][base]["id"]}
                if isinstance(a, RegressionAdjustedStatistic):
                    theta = compute_theta(a, b)
                    a.theta = b.theta = theta
                    comp["cuped"] = {
                        "theta": theta,
                        "baseline_adjusted_mean": a.mean,
                        "adjusted_mean": b.mean,
                        "baseline_adjusted_variance": a.variance,
                        "adjusted_variance": b.variance,
                    }
                for difference in ("absolute", "relative"):
                    if engine == "bayesian":
                        comp[difference] = bayesian_effect(settings, metric, gb_stat(metric["data"][base]), gb_stat(metric["data"][i]), difference)
                    else:
                        comp[difference] = frequentist_effect(settings, gb_stat(metric["data"][base]), gb_stat(metric["data"][i]), difference)
                row["comparison"] = comp
            variations.append(row)
        metrics.append({"id": metric["id"], "variations": variations})

    correction = settings.get("correction", "none")
    if engine == "frequentist" and correction != "none":
        alpha = settings.get("alpha", 0.05)
        for difference in ("absolute", "relative"):
            family = [
                row["comparison"][difference]
                for m in metrics
                for row in m["variations"]
                if "comparison" in row and "error" not in row["comparison"][difference]
            ]
            method = {"holm": "holm", "benjamini_hochberg": "fdr_bh"}[correction]
            adjusted = multipletests([e["p_value"] for e in family], method=method)[1]
            for e, p_adj in zip(family, adjusted):
                e["p_value_adjusted"] = float(p_adj)
                e["ci_adjusted"] = growthbook_adjusted_ci(e, float(p_adj), alpha)

    users = [v["units"] for v in doc["variations"]]
    weights = [v["weight"] for v in doc["variations"]]
    total_w = sum(w for w in weights if w > 0)
    expected_counts = [w / total_w * sum(users) if w > 0 else 0.0 for w in weights]
    srm = {"p_value": float(check_srm(users, weights)), "dof": len(users) - 1, "expected": expected_counts}
    if all(w > 0 for w in weights) and sum(users) > 0:
        srm["chi_square"] = float(scipy.stats.chisquare(users, expected_counts).statistic)
        assert abs(scipy.stats.chisquare(users, expected_counts).pvalue - srm["p_value"]) < 1e-12
    srm["mismatch"] = srm["p_value"] < settings.get("srm_threshold", 0.001)
    return {"srm": srm, "metrics": metrics}


def growthbook_adjusted_ci(effect, p_adj, alpha):
    """GrowthBook's adjusted interval (front-end `adjustedCI`/`setAdjustedCIs`):
    back out a standard error from the adjusted p-value with a normal
    approximation, widen only, unbounded when the adjusted p-value is 1."""
    ci = effect["ci"]
    if p_adj > 0.999999:
        return {"lower": None, "upper": None}
    est = effect["estimate"]
    if est == 0:
        return dict(ci)
    se = abs(est / scipy.stats.norm.ppf(1 - p_adj / 2))
    width = scipy.stats.norm.ppf(1 - alpha / 2) * se
    lo, hi = est - width, est + width
    if lo < ci["lower"] and hi > ci["upper"]:
        return {"lower": lo, "upper": hi}
    return dict(ci)


# ------------------------------------------------------------------ cases


def variations(*units, weights=None):
    ids = ["control", "treatment"] + [f"treatment_{i}" for i in range(2, len(units))]
    weights = weights or [1.0] * len(units)
    return [{"id": i, "weight": w, "units": u} for i, u, w in zip(ids, units, weights)]


def case(name, description, reference, doc):
    return {"name": name, "description": description, "reference": reference, "request": doc, "expected": expected_for(doc)}


def build_cases():
    cases = []
    cases.append(case(
        "two_arms_mean_welch_two_sided",
        "Welch t-test on a mean metric, absolute and relative (delta method)",
        "gbstats TwoSidedTTest; absolute cross-checked with scipy.stats.ttest_ind_from_stats",
        {"variations": variations(1000, 1012), "metrics": [
            {"id": "revenue", "data": [mean_data(1000, 10.0, 4.0), mean_data(1012, 10.4, 4.2)]}]},
    ))
    cases.append(case(
        "two_arms_proportion_welch_two_sided_alpha_0_1",
        "Conversion rate with Bernoulli variance p(1-p), 90% intervals",
        "gbstats TwoSidedTTest with ProportionStatistic",
        {"settings": {"alpha": 0.1}, "variations": variations(5000, 5100), "metrics": [
            {"id": "converted", "data": [proportion_data(5000, 0.1), proportion_data(5100, 0.11)]}]},
    ))
    cases.append(case(
        "three_arms_mean_proportion_and_ratio",
        "Three arms, each treatment against the control, three metric kinds",
        "gbstats TwoSidedTTest; RatioStatistic",
        {"variations": variations(800, 820, 790), "metrics": [
            {"id": "revenue", "data": [mean_data(800, 5.0, 3.0), mean_data(820, 5.3, 3.0), mean_data(790, 4.9, 3.1)]},
            {"id": "converted", "data": [proportion_data(800, 0.3), proportion_data(820, 0.33), proportion_data(790, 0.31)]},
            {"id": "revenue_per_session", "data": [ratio_data(800, 2.0, 3.0), ratio_data(820, 2.2, 3.0), ratio_data(790, 2.0, 3.2)]}]},
    ))
    cases.append(case(
        "two_arms_large_samples",
        "300k units per arm: Welch degrees of freedom in the hundreds of thousands",
        "gbstats TwoSidedTTest; scipy t distribution",
        {"variations": variations(300000, 301000), "metrics": [
            {"id": "revenue", "data": [mean_data(300000, 10.0, 4.0), mean_data(301000, 10.02, 4.0)]},
            {"id": "converted", "data": [proportion_data(300000, 0.1), proportion_data(301000, 0.1015)]}]},
    ))
    cases.append(case(
        "two_arms_ratio_metric",
        "Ratio metric (sum numerator / sum denominator) with the delta-method variance",
        "gbstats RatioStatistic + TwoSidedTTest",
        {"variations": variations(3000, 3000), "metrics": [
            {"id": "clicks_per_pageview", "data": [ratio_data(3000, 0.5, 4.0), ratio_data(3000, 0.55, 4.0)]}]},
    ))
    cases.append(case(
        "one_sided_greater",
        "One-sided test, H1: treatment greater; interval open above",
        "gbstats OneSidedTreatmentGreaterTTest",
        {"settings": {"alternative": "greater"}, "variations": variations(600, 610), "metrics": [
            {"id": "revenue", "data": [mean_data(600, 3.0, 2.0), mean_data(610, 3.2, 2.0)]}]},
    ))
    cases.append(case(
        "one_sided_less",
        "One-sided test, H1: treatment less; interval open below",
        "gbstats OneSidedTreatmentLesserTTest (p-value); upper bound estimate + t(1-alpha) se, see generate.py",
        {"settings": {"alternative": "less", "alpha": 0.1}, "variations": variations(600, 610), "metrics": [
            {"id": "latency", "data": [mean_data(600, 300.0, 50.0), mean_data(610, 296.0, 50.0)]}]},
    ))
    cases.append(case(
        "cuped_two_arms_mean",
        "CUPED with theta pooled over both arms; adjusted means and variances",
        "gbstats RegressionAdjustedStatistic + compute_theta + TwoSidedTTest",
        {"variations": variations(2000, 2000), "metrics": [
            {"id": "revenue", "data": [cuped_data(2000, 20.0, 6.0, 0.7), cuped_data(2000, 20.0, 6.0, 0.7, lift=0.5)]}]},
    ))
    cases.append(case(
        "cuped_three_arms_mean_and_binary",
        "CUPED for three arms (theta per pair, as gbstats) and a binary metric with a binary covariate",
        "gbstats RegressionAdjustedStatistic with SampleMean and Proportion components",
        {"variations": variations(1500, 1480, 1520), "metrics": [
            {"id": "revenue", "data": [cuped_data(1500, 8.0, 3.0, 0.5), cuped_data(1480, 8.0, 3.0, 0.5, 0.3), cuped_data(1520, 8.0, 3.0, 0.5, -0.1)]},
            {"id": "retained", "data": [cuped_binary_data(1500, 0.4, 0.7, 0.2), cuped_binary_data(1480, 0.4, 0.72, 0.22), cuped_binary_data(1520, 0.4, 0.7, 0.2)]}]},
    ))
    cases.append(case(
        "sequential_two_arms",
        "Always-valid confidence sequence and p-value, default N* = 5000",
        "gbstats SequentialTwoSidedTTest",
        {"settings": {"sequential": True}, "variations": variations(4000, 4050), "metrics": [
            {"id": "revenue", "data": [mean_data(4000, 10.0, 5.0), mean_data(4050, 10.4, 5.0)]},
            {"id": "converted", "data": [proportion_data(4000, 0.2), proportion_data(4050, 0.215)]}]},
    ))
    cases.append(case(
        "sequential_three_arms_tuned_with_cuped",
        "Sequential test with N* = 20000, alpha 0.1, three arms, CUPED and ratio metrics",
        "gbstats SequentialTwoSidedTTest",
        {"settings": {"sequential": True, "sequential_tuning": 20000, "alpha": 0.1}, "variations": variations(2500, 2400, 2450), "metrics": [
            {"id": "revenue", "data": [cuped_data(2500, 8.0, 3.0, 0.6), cuped_data(2400, 8.0, 3.0, 0.6, 0.4), cuped_data(2450, 8.0, 3.0, 0.6, 0.1)]},
            {"id": "rps", "data": [ratio_data(2500, 2.0, 3.0), ratio_data(2400, 2.1, 3.0), ratio_data(2450, 2.0, 3.0)]}]},
    ))
    cases.append(case(
        "bayesian_flat_prior_two_arms",
        "Gaussian posterior with a flat prior: credible interval, chance to win, risks",
        "gbstats EffectBayesianABTest (proper=False)",
        {"settings": {"engine": "bayesian"}, "variations": variations(1200, 1190), "metrics": [
            {"id": "revenue", "data": [mean_data(1200, 10.0, 4.0), mean_data(1190, 10.3, 4.0)]},
            {"id": "converted", "data": [proportion_data(1200, 0.25), proportion_data(1190, 0.27)]}]},
    ))
    cases.append(case(
        "bayesian_proper_relative_prior_three_arms",
        "Proper Gaussian prior on the relative effect, rescaled for the absolute effect; inverse metric; ratio and CUPED",
        "gbstats EffectBayesianABTest (proper=True, prior_type=relative)",
        {"settings": {"engine": "bayesian", "prior": {"mean": 0.0, "variance": 0.01}}, "variations": variations(900, 920, 880), "metrics": [
            {"id": "revenue", "data": [mean_data(900, 10.0, 4.0), mean_data(920, 10.6, 4.0), mean_data(880, 9.8, 4.0)]},
            {"id": "latency", "inverse": True, "data": [mean_data(900, 200.0, 40.0), mean_data(920, 195.0, 40.0), mean_data(880, 203.0, 40.0)]},
            {"id": "rps", "data": [ratio_data(900, 2.0, 3.0), ratio_data(920, 2.2, 3.0), ratio_data(880, 2.0, 3.0)]},
            {"id": "revenue_cuped", "data": [cuped_data(900, 8.0, 3.0, 0.6), cuped_data(920, 8.0, 3.0, 0.6, 0.4), cuped_data(880, 8.0, 3.0, 0.6)]}]},
    ))
    cases.append(case(
        "bayesian_proper_absolute_prior_per_metric",
        "Proper prior on the absolute scale set per metric, alpha 0.1",
        "gbstats EffectBayesianABTest (proper=True, prior_type=absolute)",
        {"settings": {"engine": "bayesian", "alpha": 0.1}, "variations": variations(700, 710), "metrics": [
            {"id": "revenue", "prior": {"mean": 0.1, "variance": 0.04, "scale": "absolute"},
             "data": [mean_data(700, 5.0, 2.0), mean_data(710, 5.2, 2.0)]}]},
    ))
    cases.append(case(
        "srm_two_arms_unequal_weights",
        "SRM chi-square against 30/70 weights, no mismatch",
        "gbstats check_srm; statistic from scipy.stats.chisquare",
        {"variations": variations(3010, 6990, weights=[0.3, 0.7]), "metrics": []},
    ))
    cases.append(case(
        "srm_four_arms_mismatch",
        "SRM with four arms and a real mismatch",
        "gbstats check_srm; statistic from scipy.stats.chisquare",
        {"variations": variations(2500, 2500, 2500, 2700), "metrics": []},
    ))
    cases.append(case(
        "srm_zero_weight_arm",
        "An arm with zero weight is left out of the sum but kept in the degrees of freedom",
        "gbstats check_srm",
        {"variations": variations(500, 540, 3, weights=[0.5, 0.5, 0.0]), "metrics": []},
    ))
    holm_metrics = [
        {"id": "revenue", "data": [mean_data(1000, 10.0, 4.0), mean_data(1000, 10.5, 4.0), mean_data(1000, 10.1, 4.0)]},
        {"id": "converted", "data": [proportion_data(1000, 0.2), proportion_data(1000, 0.24), proportion_data(1000, 0.2)]},
        {"id": "rps", "data": [ratio_data(1000, 2.0, 3.0), ratio_data(1000, 2.1, 3.0), ratio_data(1000, 2.0, 3.0)]},
        {"id": "sessions", "data": [mean_data(1000, 3.0, 1.0), mean_data(1000, 3.05, 1.0), mean_data(1000, 3.0, 1.0)]},
    ]
    cases.append(case(
        "holm_across_metrics_and_variations",
        "Holm-Bonferroni over 4 metrics x 2 variations, adjusted intervals",
        "statsmodels multipletests(method='holm'); intervals per GrowthBook adjustedCI",
        {"settings": {"correction": "holm"}, "variations": variations(1000, 1000, 1000), "metrics": holm_metrics},
    ))
    cases.append(case(
        "benjamini_hochberg_across_metrics_and_variations",
        "Benjamini-Hochberg over the same family",
        "statsmodels multipletests(method='fdr_bh'); intervals per GrowthBook adjustedCI",
        {"settings": {"correction": "benjamini_hochberg"}, "variations": variations(1000, 1000, 1000), "metrics": holm_metrics},
    ))
    cases.append(case(
        "holm_with_sequential",
        "Holm over always-valid p-values",
        "gbstats SequentialTwoSidedTTest + statsmodels holm",
        {"settings": {"correction": "holm", "sequential": True}, "variations": variations(1000, 1000, 1000), "metrics": holm_metrics},
    ))
    degenerate = [
        {"id": "constant", "data": [{"type": "mean", "n": 100, "sum": 200.0, "sum_squares": 400.0}, {"type": "mean", "n": 100, "sum": 210.0, "sum_squares": 500.0}]},
        {"id": "single_unit", "data": [{"type": "mean", "n": 1, "sum": 2.0, "sum_squares": 4.0}, {"type": "mean", "n": 50, "sum": 110.0, "sum_squares": 300.0}]},
        {"id": "empty", "data": [{"type": "proportion", "n": 0, "successes": 0.0}, {"type": "proportion", "n": 40, "successes": 10.0}]},
        {"id": "zero_control_mean", "data": [{"type": "mean", "n": 100, "sum": 0.0, "sum_squares": 100.0}, {"type": "mean", "n": 100, "sum": 30.0, "sum_squares": 120.0}]},
        {"id": "no_conversions", "data": [{"type": "proportion", "n": 100, "successes": 0.0}, {"type": "proportion", "n": 100, "successes": 3.0}]},
    ]
    cases.append(case(
        "degenerate_frequentist",
        "Zero variance, one unit, no units, zero baseline mean: error codes and default numbers",
        "gbstats default outputs; absolute effect with a zero baseline mean from scipy Welch",
        {"variations": variations(100, 100),
         # gbstats 0.8 divides by zero on a zero baseline mean with the absolute
         # scale (it rescales even a flat prior), so that metric is left out here.
         "metrics": [m for m in degenerate if m["id"] != "zero_control_mean"]},
    ))
    cases.append(case(
        "degenerate_bayesian",
        "The same degenerate data through the Bayesian engine",
        "gbstats EffectBayesianABTest default outputs",
        {"settings": {"engine": "bayesian"}, "variations": variations(100, 100),
         # gbstats 0.8 divides by zero on a zero baseline mean with the absolute
         # scale (it rescales even a flat prior), so that metric is left out here.
         "metrics": [m for m in degenerate if m["id"] != "zero_control_mean"]},
    ))
    return cases


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.json")
    with open(out, "w") as f:
        json.dump({"version": 1, "tolerance": "1e-6 relative, or 1e-9 absolute near zero", "cases": build_cases()}, f, indent=1)
        f.write("\n")
    print(f"wrote {out}")
