"""The statistics of folded seeds against scipy.stats computed here, Holm by hand, rounding by the rule."""

import math

import pytest
from scipy import stats

from expdb.stats import Summary, ci_half_width, compare, holm, round_to, seeds_needed, with_spread

A = {0: 0.571, 1: 0.548, 2: 0.597, 3: 0.560, 4: 0.579}
B = {0: 0.566, 1: 0.551, 2: 0.583, 3: 0.541, 4: 0.590}


def test_same_seeds_are_paired_and_match_scipys_paired_t_test():
    found = compare(Summary(B), Summary(A))
    assert found.test == "paired"
    differences = [B[seed] - A[seed] for seed in A]
    expected = stats.ttest_rel(list(B.values()), list(A.values()))
    assert found.p == pytest.approx(expected.pvalue, rel=1e-9)
    half = stats.t.ppf(0.975, 4) * stats.sem(differences)
    mean = sum(differences) / 5
    assert (found.low, found.high) == pytest.approx((mean - half, mean + half), rel=1e-9)
    assert found.difference == pytest.approx(mean)


def test_different_seeds_use_welchs_test_as_scipy_computes_it():
    other = {seed + 10: value for seed, value in B.items() if seed < 4}  # other seeds, and only four
    found = compare(Summary(other), Summary(A))
    assert found.test == "welch"
    expected = stats.ttest_ind(list(other.values()), list(A.values()), equal_var=False)
    assert found.p == pytest.approx(expected.pvalue, rel=1e-9)
    interval = expected.confidence_interval(0.95)
    assert (found.low, found.high) == pytest.approx((interval.low, interval.high), rel=1e-9)
    assert found.df == pytest.approx(expected.df)


def test_the_same_seeds_with_one_missing_is_not_paired():
    assert compare(Summary({0: 1.0, 1: 2.0, 2: 2.5}), Summary({0: 1.0, 1: 2.2})).test == "welch"


def test_fewer_than_two_values_or_no_spread_is_no_test():
    one = compare(Summary({0: 0.5}), Summary(A))
    assert (one.tested, one.reason, one.difference) == (False, "n < 2", pytest.approx(0.5 - sum(A.values()) / 5))
    shifted = compare(Summary({seed: value + 0.1 for seed, value in A.items()}), Summary(A))
    assert (shifted.tested, shifted.reason) == (False, "no spread")


def test_ci_half_width_is_the_t_interval():
    assert ci_half_width(0.02, 5) == pytest.approx(stats.t.ppf(0.975, 4) * 0.02 / math.sqrt(5))


def test_holm_by_hand():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04, kept at 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, None, 0.005]) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


@pytest.mark.parametrize(
    ("mean", "spread", "expected"),
    [
        (0.3081, 0.00764, ("0.308", "0.008")),  # 764: one significant digit
        (12.35, 1.26, ("12.4", "1.3")),  # 126: two, and 12.35 rounds half up
        (0.571, 0.0213, ("0.571", "0.021")),
        (0.5, 0.0354, ("0.500", "0.035")),  # 354: the last with two digits
        (0.5, 0.0355, ("0.50", "0.04")),  # 355: one
        (1.5, 0.0096, ("1.500", "0.010")),  # 960 rounds up to 1000: two digits at the same place
        (1234.0, 56.0, ("1230", "60")),  # above 1: whole tens
        (-0.0049, 0.026, ("-0.005", "0.026")),
    ],
)
def test_rounding_to_the_spreads_significant_digits(mean, spread, expected):
    assert with_spread(mean, spread) == expected


def test_round_to_writes_no_negative_zero():
    assert round_to(-0.0004, -3) == "0.000"
    assert round_to(-4.0, 1) == "0"


def test_seeds_needed_reaches_80_percent_power_by_scipys_noncentral_t():
    effect, std = 0.03, 0.021
    n = seeds_needed(effect, std, paired=False)

    def power(k: int) -> float:
        df = 2 * k - 2
        critical = stats.t.ppf(0.975, df)
        noncentrality = effect / (std * math.sqrt(2 / k))
        return stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality)

    assert n == 9  # the worked example: a difference of 0.03 at a spread of 0.021
    assert power(n) >= 0.8 > power(n - 1)


def test_seeds_needed_gives_up_beyond_a_thousand():
    assert seeds_needed(0.0001, 1.0, paired=False) is None
