"""A verdict in plain English, and its headline numbers, from a comparison of the model with its baselines.

Each metric is judged against its best baseline (the one with the lowest
mean loss) at the significance level ``alpha = 1 - level`` of the intervals
(0.05 for 95% intervals):

* **significantly better**: the Diebold-Mariano two-sided p-value is below
  ``alpha`` *and* the skill score's bootstrap interval lies above 0;
* **significantly worse**: the same, with the statistic and the interval below 0;
* **not significant**: anything else, including the two criteria disagreeing
  (a cautious report claims a difference only where both see it);
* **too few predictions**: fewer than ``min_predictions`` scored rows (30 by
  default): the numbers are shown, but no p-value is;
* **no difference**: nothing to test, e.g. the model's losses equal the
  baseline's on every row (the test's note says why).

Whenever the model's point estimate is worse than the best baseline's (so
it loses to at least one baseline), the sentence starts with ``WARNING:``,
whether or not that is significant.

The text is one sentence on the primary metric (close MAE by default) and,
when there are other metrics, one more sentence with a clause per metric.

Examples
--------
>>> import numpy as np
>>> from ettlib.evaluation.comparison import Comparison, compare_losses
>>> rng = np.random.default_rng(0)
>>> base = np.abs(rng.normal(0, 1, 400))
>>> worse = compare_losses("mae_close", {"model": 1.2 * base, "persistence": base}, reps=100)
>>> v = verdict(Comparison("model", {"mae_close": worse}))
>>> v.text.startswith("WARNING: the model is significantly worse than persistence on close MAE")
True
>>> v.headlines[0].outcome
<Outcome.WORSE: 'significantly worse'>
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import pandas as pd

from ettlib.errors import ConfigError, UnknownNameError
from ettlib.evaluation.comparison import Comparison, MetricComparison
from ettlib.evaluation.stats import Interval

__all__ = ["Outcome", "Headline", "Verdict", "judge", "verdict", "format_p_value"]

#: Fewest scored rows a metric needs before it is tested.
MIN_PREDICTIONS = 30


class Outcome(StrEnum):
    """How a metric of the model compares with its best baseline."""

    BETTER = "significantly better"
    NOT_SIGNIFICANT = "not significant"
    WORSE = "significantly worse"
    TOO_FEW = "too few predictions"
    NO_DIFFERENCE = "no difference"


@dataclass(frozen=True, slots=True)
class Headline:
    """The headline numbers of one metric, and its sentence.

    ``skill`` is the model's skill score against ``baseline`` (positive:
    the model is better); ``p_value`` is the two-sided Diebold-Mariano
    p-value (NaN where no test was made); ``loses`` is True where the model's
    point estimate is worse than the baseline's.
    """

    metric: str
    label: str
    higher_is_better: bool
    n: int
    model_value: Interval
    baseline: str | None
    baseline_value: Interval | None
    skill: Interval | None
    p_value: float
    outcome: Outcome
    loses: bool
    sentence: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """Plain-English verdict (``text``) and the headline numbers behind it."""

    text: str
    headlines: tuple[Headline, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        """The sentences of the metrics on which the model loses to a baseline."""
        return tuple(h.sentence for h in self.headlines if h.loses)

    def table(self) -> pd.DataFrame:
        """The headline numbers as a small DataFrame, one row per metric."""
        rows = []
        for h in self.headlines:
            skill = h.skill or Interval(math.nan, math.nan, math.nan)
            baseline = h.baseline_value or Interval(math.nan, math.nan, math.nan)
            rows.append({
                "metric": h.label, "n": h.n, "model": h.model_value.estimate,
                "model low": h.model_value.low, "model high": h.model_value.high,
                "baseline": h.baseline, "baseline value": baseline.estimate,
                "skill": skill.estimate, "skill low": skill.low, "skill high": skill.high,
                "DM p": h.p_value, "outcome": str(h.outcome),
            })
        return pd.DataFrame(rows)


def format_p_value(p: float) -> str:
    """``"p < 0.001"`` or ``"p = 0.21"`` (two significant digits).

    >>> format_p_value(0.2134), format_p_value(0.0432), format_p_value(1e-9)
    ('p = 0.21', 'p = 0.043', 'p < 0.001')
    """
    if not math.isfinite(p):
        return "no p-value"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _percent(x: float) -> str:
    """A share as a percentage: one decimal, or two significant digits below 0.1%."""
    return f"{x:.1%}" if abs(x) >= 0.001 or x == 0 else f"{x * 100:.2g}%"


def _value(mc: MetricComparison, value: float) -> str:
    return f"{value:.1%}" if mc.spec.higher_is_better else f"{value:#.4g}"


def _gap(mc: MetricComparison, model: float, baseline: float, skill: float) -> str:
    """How far apart: relative for a loss (the skill), in percentage points for an accuracy."""
    if mc.spec.higher_is_better:
        return f"{abs(model - baseline) * 100:.1f} points"
    return _percent(abs(skill))


def _evidence(mc: MetricComparison, skill: Interval, p: float) -> str:
    interval = f"{skill.level:.0%} CI {_percent(skill.low)} to {_percent(skill.high)}"
    if mc.spec.higher_is_better:
        interval = f"skill {_percent(skill.estimate)}, {interval}"
    else:
        interval = f"skill {interval}"
    return f"{interval}, DM {format_p_value(p)}"


def judge(mc: MetricComparison, *, min_predictions: int = MIN_PREDICTIONS) -> Headline:
    """The :class:`Headline` (outcome and sentence) of one metric (see the module doc)."""
    if not isinstance(min_predictions, int) or min_predictions < 3:
        raise ConfigError(f"min_predictions must be an integer >= 3, got {min_predictions!r}")
    label, model_value, baseline = mc.spec.label, mc.values[mc.model], mc.best_baseline
    if baseline is None:
        return Headline(mc.metric, label, mc.spec.higher_is_better, mc.n, model_value, None, None, None,
                        math.nan, Outcome.TOO_FEW, False,
                        f"No {label} to judge: no {mc.spec.unit} was scored.")
    base_value, skill = mc.values[baseline], mc.skill[baseline]
    m, b = model_value.estimate, base_value.estimate
    loses = (m < b) if mc.spec.higher_is_better else (m > b)

    def headline(outcome: Outcome, p: float, sentence: str) -> Headline:
        return Headline(mc.metric, label, mc.spec.higher_is_better, mc.n, model_value, baseline, base_value,
                        skill, p, outcome, loses, sentence)

    numbers = f"{_value(mc, m)} vs {_value(mc, b)}"
    warn = "WARNING: " if loses else ""
    if mc.n < min_predictions:
        return headline(Outcome.TOO_FEW, math.nan, (
            f"{warn}Too few predictions to judge {label}: {mc.n} scored {mc.spec.unit}s "
            f"(at least {min_predictions} needed); the model scores {numbers} for {baseline}, "
            f"and no p-value is given."))
    test = mc.test
    if test is None or not test.valid:
        reason = test.note if test is not None else "no test was made"
        return headline(Outcome.NO_DIFFERENCE, math.nan, (
            f"{warn}The model's {label} cannot be told apart from {baseline}'s ({numbers}): {reason}."))

    p = test.p_value
    significant = p < 1.0 - skill.level and skill.is_finite and not skill.covers(0.0)
    gap = _gap(mc, m, b, skill.estimate)
    evidence = f"{numbers}; {_evidence(mc, skill, p)}"
    if significant and test.statistic > 0:
        return headline(Outcome.BETTER, p,
                        f"The model beats {baseline} on {label} by {gap} ({evidence}): significant.")
    if significant:
        return headline(Outcome.WORSE, p, (
            f"WARNING: the model is significantly worse than {baseline} on {label}, by {gap} ({evidence})."))
    if loses:
        return headline(Outcome.NOT_SIGNIFICANT, p, (
            f"WARNING: the model loses to {baseline} on {label} by {gap} ({evidence}): not significant, "
            f"and no sign that it learned anything {baseline} does not know."))
    verb = "beats" if m != b else "ties with"
    return headline(Outcome.NOT_SIGNIFICANT, p,
                    f"The model {verb} {baseline} on {label} by {gap} ({evidence}): not significant.")


def _clause(h: Headline) -> str:
    if h.baseline is None:
        return f"{h.label}: nothing scored"
    p = "" if not math.isfinite(h.p_value) else f", {format_p_value(h.p_value)}"
    fmt = "{:.1%}" if h.higher_is_better else "{:#.4g}"
    numbers = f"{fmt.format(h.model_value.estimate)} vs {fmt.format(h.baseline_value.estimate)}"
    if h.outcome in (Outcome.TOO_FEW, Outcome.NO_DIFFERENCE):
        return f"{h.label}: {h.outcome} ({numbers} for {h.baseline})"
    if h.outcome is Outcome.BETTER:
        what = f"significantly better than {h.baseline}"
    elif h.outcome is Outcome.WORSE:
        what = f"SIGNIFICANTLY WORSE than {h.baseline}"
    elif h.loses:
        what = f"LOSES to {h.baseline}, not significant"
    else:
        what = f"not significantly better than {h.baseline}"
    return f"{h.label}: {what} ({numbers}{p})"


def verdict(
    comparison: Comparison,
    *,
    primary: str = "mae_close",
    min_predictions: int = MIN_PREDICTIONS,
) -> Verdict:
    """The :class:`Verdict` of a comparison: a sentence on ``primary``, one more on the other metrics.

    Parameters
    ----------
    comparison
        From :func:`~ettlib.evaluation.comparison.compare_predictions`.
    primary
        The metric of the first sentence (the first metric if it is absent).
    min_predictions
        Fewest scored rows before a metric is tested.
    """
    if not comparison.metrics:
        raise ConfigError("the comparison has no metric to judge")
    order = list(comparison.metrics)
    if primary not in comparison.metrics:
        if primary != "mae_close":
            raise UnknownNameError("metric", primary, order)
        primary = order[0]
    order.remove(primary)
    order.insert(0, primary)
    headlines = tuple(judge(comparison.metrics[name], min_predictions=min_predictions) for name in order)
    text = headlines[0].sentence
    if len(headlines) > 1:
        rest = "; ".join(_clause(h) for h in headlines[1:])
        text += f" Also, {rest}."
    return Verdict(text, headlines)
