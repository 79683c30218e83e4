"""The statistics of repeated runs: summaries over seeds, tests against a baseline, Holm's
correction, rounding a value with its spread, and how many seeds a difference needs.

scipy gives the distributions (Student's t and the noncentral t, through `scipy.special`,
which imports in a fraction of `scipy.stats`' time); it is imported inside the functions that
compute a test statistic, so a table that shows none never loads it.
"""

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

LEVEL = 0.95  # confidence of the intervals
ALPHA = 0.05  # significance level of the tests, after Holm's correction
POWER = 0.8  # the power the seed estimate aims at
MAX_SEEDS = 1000  # the seed estimate gives up beyond this many seeds per variant


@dataclass(frozen=True)
class Summary:
    """One variant's values of one metric, keyed by the seed (or whatever was folded over) they came from."""

    values: Mapping[object, float]
    # Worked out once, as a table of 10,000 variants asks for them again and again.
    mean: float = field(init=False)
    std: float | None = field(init=False)  # the sample standard deviation (n - 1), from two values on

    def __post_init__(self) -> None:
        values = self.values.values()
        object.__setattr__(self, "mean", math.fsum(values) / len(values))  # statistics.fmean's sum, without its checks
        object.__setattr__(self, "std", sample_std(list(values)) if len(values) > 1 else None)

    @property
    def n(self) -> int:
        return len(self.values)


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation (n - 1) in floats: statistics.stdev's exact fractions cost 0.2 ms a call."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))


@functools.lru_cache(maxsize=4096)
def t_quantile(probability: float, df: float) -> float:
    """Student's t quantile; cached, as a table of seeds asks for a few (probability, df) thousands of times
    and each inversion costs about 0.1 ms."""
    from scipy.special import stdtrit

    return float(stdtrit(df, probability))


def ci_half_width(std: float, n: int, level: float = LEVEL) -> float:
    """Half the width of the `level` confidence interval of a mean of n values with this std."""
    return t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n)


@dataclass(frozen=True)
class Difference:
    """A variant minus the baseline: the difference of means, its confidence interval and the test's p-value.

    `test` is "paired" (on the seeds both have) or "welch"; without a test, `reason` says why,
    and only `difference` is set.
    """

    difference: float
    low: float | None = None
    high: float | None = None
    p: float | None = None
    test: str | None = None
    reason: str = ""
    df: float | None = None
    p_adjusted: float | None = None  # after Holm's correction over the table's comparisons
    std: float | None = None  # the spread the test saw: of the per-seed differences (paired), else pooled

    @property
    def significant(self) -> bool:
        return self.p_adjusted is not None and self.p_adjusted < ALPHA

    @property
    def tested(self) -> bool:
        return self.p is not None


def compare(variant: Summary, baseline: Summary, level: float = LEVEL) -> Difference:
    """The difference of means, variant minus baseline, tested.

    With the same seeds on both sides, a paired t-test on the per-seed differences; otherwise
    Welch's t-test. With fewer than two values on a side, or no spread at all, no test.
    """
    return compare_many([(variant, baseline)], level)[0]


def compare_many(pairs: Sequence[tuple[Summary, Summary]], level: float = LEVEL) -> list[Difference]:
    """`compare` of each (variant, baseline) pair; the t distribution is evaluated for all the tests at
    once (a table of 2,000 variants: one call into scipy, not two per row)."""
    found: list[Difference | None] = []
    tests: list[tuple[int, float, float, float, str, float]] = []  # index, difference, se, df, test, std
    for variant, baseline in pairs:
        difference = variant.mean - baseline.mean
        if variant.n < 2 or baseline.n < 2:
            found.append(Difference(difference, reason="n < 2"))
            continue
        if variant.values.keys() == baseline.values.keys():
            differences = [variant.values[seed] - baseline.values[seed] for seed in variant.values]
            std = sample_std(differences)
            se = std / math.sqrt(len(differences))
            df: float = len(differences) - 1
            test = "paired"
        else:
            va, vb = variant.std**2 / variant.n, baseline.std**2 / baseline.n  # type: ignore[operator]
            se = math.sqrt(va + vb)
            std = math.sqrt((variant.std**2 + baseline.std**2) / 2)  # type: ignore[operator]
            df = (va + vb) ** 2 / (va**2 / (variant.n - 1) + vb**2 / (baseline.n - 1)) if se > 0 else math.nan
            test = "welch"
        if se <= 1e-12 * (abs(variant.mean) + abs(baseline.mean)):  # equal up to rounding: 0.42 - 0.32 three times over
            found.append(Difference(difference, reason="no spread"))
            continue
        tests.append((len(found), difference, se, df, test, std))
        found.append(None)
    if tests:
        import numpy as np
        from scipy.special import stdtr, stdtrit

        dfs = np.array([df for _, _, _, df, _, _ in tests], dtype=float)
        quantiles = stdtrit(dfs, 0.5 + level / 2)
        p_values = 2 * stdtr(dfs, -np.abs(np.array([difference / se for _, difference, se, _, _, _ in tests])))
        for (index, difference, se, df, test, std), quantile, p in zip(tests, quantiles.tolist(), p_values.tolist(), strict=True):
            half = quantile * se
            found[index] = Difference(difference, difference - half, difference + half, p, test, df=df, std=std)
    return found  # type: ignore[return-value]


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of p-values (None, for no test, is left out of the count).

    The k-th smallest of m p-values is multiplied by m - k + 1, capped at 1, and kept no smaller
    than the adjusted p-values before it.
    """
    order = sorted((p, index) for index, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        adjusted[index] = running
    return adjusted


# -- rounding --------------------------------------------------------------------------------


def _leading_digits(spread: float) -> int:
    """The spread's first three significant digits as an integer, 100 to 999."""
    exponent = math.floor(math.log10(spread))
    return int(Decimal(repr(spread)).scaleb(2 - exponent).to_integral_value(ROUND_HALF_UP))


def spread_exponent(spread: float) -> int:
    """The decimal place (10**exponent) a spread is rounded to: 2 significant digits when its leading
    digits are 100-354, else 1 (the Particle Data Group's rule). 0.00764 -> -3, 1.26 -> -1, 0.021 -> -3."""
    exponent = math.floor(math.log10(spread))
    # 950-999 round up to 1000: two significant digits at the same place (0.0096 -> 0.010).
    return exponent - 1 if _leading_digits(spread) < 355 else exponent


def round_to(value: float, exponent: int) -> str:
    """`value` rounded half up at 10**exponent, written out: round_to(12.35, -1) == "12.4", round_to(1234, 1) == "1230"."""
    quantum = Decimal(1).scaleb(exponent)
    rounded = Decimal(repr(float(value))).quantize(quantum, ROUND_HALF_UP)
    if exponent >= 0:
        text = f"{int(rounded):d}"
        return "0" if text == "-0" else text
    text = f"{rounded:f}"
    return text[1:] if text.startswith("-") and not rounded else text


def with_spread(mean: float, spread: float) -> tuple[str, str]:
    """A mean and its spread as a paper writes them: the spread with 1 or 2 significant digits, the mean
    to the same decimal place. (0.3081, 0.00764) -> ("0.308", "0.008"); (12.35, 1.26) -> ("12.4", "1.3")."""
    if not math.isfinite(spread) or spread <= 0 or not math.isfinite(mean):
        raise ValueError(f"a spread must be a positive number, not {spread}")
    exponent = spread_exponent(spread)
    return round_to(mean, exponent), round_to(spread, exponent)


# -- power -----------------------------------------------------------------------------------


def seeds_needed(effect: float, std: float, paired: bool, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """The smallest number of seeds per variant with which a two-sided t-test at `alpha` detects a true
    difference `effect` with probability `power`, if the spread is `std` (the std of the per-seed
    differences for a paired test, else of each variant's values); None beyond MAX_SEEDS."""
    from scipy.special import nctdtr, stdtrit

    if effect == 0 or std <= 0:
        return None
    for n in range(2, MAX_SEEDS + 1):
        df = n - 1 if paired else 2 * n - 2
        noncentrality = abs(effect) / (std / math.sqrt(n) if paired else std * math.sqrt(2 / n))
        critical = float(stdtrit(df, 1 - alpha / 2))
        reached = 1 - float(nctdtr(df, noncentrality, critical)) + float(nctdtr(df, noncentrality, -critical))
        if reached >= power:
            return n
    return None
