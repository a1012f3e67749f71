"""What the experiment report shows: the verdict box, the metric tables, the report's own metadata.

Each function returns something a notebook cell displays (an HTML string
wrapped by :func:`html`, or a DataFrame), built from an
:class:`ettlib.notebooks.experiment.RunEvaluation`.  Numbers are formatted
here, once: MAE to four significant digits, accuracies and skill scores as
percentages, p-values as :func:`ettlib.evaluation.verdict.format_p_value`
does, every interval as ``low to high``.

:func:`report_metadata` is an output the HTML does not show: a JSON object
under the mime type :data:`REPORT_MIME` (run id, symbols, title), from which
``ett report`` names the report file and titles the page.

Examples
--------
>>> interval_text(0.1234, 0.2, percent=True)
'12.3% to 20.0%'
>>> report_metadata("run-1", ["ETH/USDT"])[REPORT_MIME]["title"]
'Experiment run-1: ETH/USDT'
"""

from __future__ import annotations

import math
from html import escape

from ettlib.reports.running import REPORT_MIME

__all__ = [
    "REPORT_MIME",
    "DEMO_BANNER",
    "BASELINES",
    "predictor_label",
    "report_metadata",
    "interval_text",
    "verdict_box",
    "headline_table",
    "metric_table",
    "trading_table",
    "html",
]

#: The banner of a report on the synthetic demo data.
DEMO_BANNER = ("SYNTHETIC DEMO DATA: these candles come from ettlib's market simulator, not from a market. "
               "What a model learns here is what the simulator put in; nothing here says anything about "
               "real prices.")


#: What each baseline is, as the metric table says it.
BASELINES: dict[str, str] = {
    "persistence": "the next close is the last close",
    "frozen": "the same model, never trained: what learning added",
    "chance": "a coin flip: 50%",
    "last candle": "the last candle's direction again",
    "majority so far": "the most frequent outcome so far",
    "last candle reversed": "BUY after a falling last candle, SELL after a rising one",
}


def predictor_label(name: str, model: str = "model") -> str:
    """How the metric table names a predictor.

    >>> predictor_label("frozen"), predictor_label("model")
    ('frozen (baseline: the same model, never trained: what learning added)', 'model')
    """
    if name == model:
        return "model"
    what = BASELINES.get(name)
    return f"{name} (baseline: {what})" if what else f"{name} (baseline)"


def report_metadata(run_id: str, symbols) -> dict:
    """A display bundle (``display(bundle, raw=True)``) naming the report: run id, symbols, title."""
    symbols = list(symbols)
    title = f"Experiment {run_id}: {', '.join(symbols)}"
    return {REPORT_MIME: {"run_id": run_id, "symbols": symbols, "title": title},
            "text/plain": f"report of run {run_id}"}


class html(str):
    """A string of HTML that Jupyter displays as HTML."""

    def _repr_html_(self) -> str:
        return str(self)


def _fmt(value: float, percent: bool) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.1%}" if percent else f"{value:#.4g}"


def interval_text(low: float, high: float, *, percent: bool = False) -> str:
    """``"low to high"`` of an interval, ``-`` where it is not finite."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "-"
    return f"{_fmt(low, percent)} to {_fmt(high, percent)}"


def verdict_box(evaluation, *, demo: bool) -> html:
    """The verdict (one or two sentences) in a box, with the demo banner above it when ``demo``."""
    parts = []
    if demo:
        parts.append(f'<div class="ett-demo" style="border:3px solid #c62828;background:#ffebee;'
                     f'padding:10px;margin:8px 0;font-weight:bold;font-size:1.1em">{escape(DEMO_BANNER)}</div>')
    if evaluation.verdict is None:
        text = "No prediction was scored in this run: there is nothing to judge."
        loses = False
    else:
        text = evaluation.verdict.text
        loses = bool(evaluation.verdict.warnings)
    colour = "#e65100" if loses else "#1b5e20"
    parts.append(f'<div class="ett-verdict" style="border-left:6px solid {colour};padding:8px 12px;'
                 f'margin:8px 0;font-size:1.05em"><b>Verdict.</b> {escape(text)}</div>')
    return html("\n".join(parts))


def headline_table(evaluation):
    """The headline numbers: per metric the model, its best baseline, the skill and the test."""
    import pandas as pd

    if evaluation.verdict is None:
        return pd.DataFrame()
    rows = []
    for h in evaluation.verdict.headlines:
        pct = h.higher_is_better
        base = h.baseline_value
        rows.append({
            "metric": h.label, "scored": h.n,
            "model": _fmt(h.model_value.estimate, pct),
            "model 95% CI": interval_text(h.model_value.low, h.model_value.high, percent=pct),
            "best baseline": h.baseline or "-",
            "baseline": _fmt(base.estimate, pct) if base else "-",
            "skill": _fmt(h.skill.estimate, True) if h.skill else "-",
            "skill 95% CI": interval_text(h.skill.low, h.skill.high, percent=True) if h.skill else "-",
            "DM p": _p(h.p_value), "outcome": str(h.outcome),
        })
    return pd.DataFrame.from_records(rows).set_index("metric")


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def metric_table(evaluation):
    """Every metric of the model and of every baseline, with its interval and the model's skill against it."""
    import pandas as pd

    if evaluation.comparison is None:
        return pd.DataFrame()
    rows = []
    for mc in evaluation.comparison.metrics.values():
        pct = mc.spec.higher_is_better
        for name, value in mc.values.items():
            is_model = name == mc.model
            skill = None if is_model else mc.skill.get(name)
            test = mc.test if name == mc.best_baseline else None
            rows.append({
                "metric": mc.spec.label, "predictor": predictor_label(name, mc.model),
                "value": _fmt(value.estimate, pct),
                "95% CI": interval_text(value.low, value.high, percent=pct),
                "model's skill": "-" if skill is None else _fmt(skill.estimate, True),
                "skill 95% CI": "-" if skill is None else interval_text(skill.low, skill.high, percent=True),
                "DM p (vs best)": "-" if test is None else _p(test.p_value),
                "n": mc.n,
            })
    return pd.DataFrame.from_records(rows).set_index(["metric", "predictor"])


def trading_table(evaluation):
    """Following the actions against buy-and-hold, per symbol, with intervals of the total return and Sharpe."""
    import pandas as pd

    rows = []
    for symbol, diagnostic in evaluation.trading.items():
        ci = evaluation.trading_intervals.get(symbol)
        for result, key in ((diagnostic.strategy, ""), (diagnostic.buy_and_hold, "buy_and_hold_")):
            total = getattr(ci, f"{key}total_return", None) if ci else None
            sharpe = getattr(ci, f"{key}sharpe", None) if ci else None
            rows.append({
                "symbol": symbol, "": "following the actions" if not key else "buy-and-hold",
                "total return": _fmt(result.total_return, True),
                "95% CI": "-" if total is None else interval_text(total.low, total.high, percent=True),
                "Sharpe (annualized)": f"{result.sharpe:.2f}" if math.isfinite(result.sharpe) else "-",
                "Sharpe 95% CI": "-" if sharpe is None else
                f"{sharpe.low:.2f} to {sharpe.high:.2f}" if sharpe.is_finite else "-",
                "max drawdown": _fmt(result.max_drawdown, True), "turnover": f"{result.turnover:g}",
                "hit rate": _fmt(result.hit_rate, True), "periods": result.n_periods,
            })
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame.from_records(rows).set_index(["symbol", ""])
