"""Calibration of the model comparison on cross-validated fits (block swap, widened for folds).

Two feature sets of 6 random columns each (independent of the data), fitted by ``fit_encoding`` to
pure AR(1) noise (phi 0.3, 400 targets, 100 TRs a run, delays 1-2): the two models are equally
(un)predictive, so about 5 % of targets may reach p <= 0.05, and a 95 % interval of the difference
should cover 0 on about 95 % of them. For each CV scheme the script prints that rate and the
interval coverage with the null widened by ``sqrt(cv_variance_factor)`` (the default) and, in the
same run, unwidened (``cv_factor=1``, the reference).

Usage: ``.venv/bin/python bench/compare_calibration.py``. Last line:
``bench compare_calibration: <worst widened rate> % at p <= 0.05 (goal <= 7; unwidened <max> %)``.
"""

import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "engine"))

from planted import _ar1  # noqa: E402

from engine.encoding.fit import fit_encoding  # noqa: E402
from engine.encoding.stats import compare_models  # noqa: E402

CASES = [(2, "loro"), (4, "loro"), (8, "loro"), (6, 3), (4, [[3]])]


def main() -> None:
    warnings.filterwarnings("ignore")
    widened_rates, unwidened_rates = [], []
    print(f"{'runs':>4} {'cv':>8} {'factor':>6} {'p<=.05':>7} {'unwid.':>7} {'CI cov':>7} {'unwid.':>7}")
    for n_runs, cv in CASES:
        rng = np.random.default_rng(n_runs)
        X = [rng.standard_normal((100, 12)).astype(np.float32) for _ in range(n_runs)]
        Y = [_ar1(rng, 100, 400, 0.3).astype(np.float32) for _ in range(n_runs)]
        fit = dict(delays=(1, 2), alphas=np.logspace(-1, 4, 6), cv=cv)
        a = fit_encoding([x[:, :6] for x in X], Y, **fit)
        b = fit_encoding([x[:, 6:] for x in X], Y, **fit)
        row = []
        for factor in ("auto", 1):
            c = compare_models(a, b, n_perm=500, n_boot=200, seed=0, cv_factor=factor)
            row.append((c.settings["cv_factor"], float(np.mean(c.p_values <= 0.05)),
                        float(np.mean((c.ci_low <= 0) & (0 <= c.ci_high)))))
        (f, p, cov), (_, p1, cov1) = row
        widened_rates.append(p)
        unwidened_rates.append(p1)
        print(f"{n_runs:>4} {str(cv):>8} {f:>6.2f} {100 * p:>6.1f}% {100 * p1:>6.1f}% {100 * cov:>6.1f}% "
              f"{100 * cov1:>6.1f}%")
    print(f"bench compare_calibration: {100 * max(widened_rates):.1f} % at p <= 0.05 (goal <= 7; "
          f"unwidened {100 * max(unwidened_rates):.1f} %)")


if __name__ == "__main__":
    main()
