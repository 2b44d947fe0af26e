"""Joint spaces that do not dilute: banded ridge (default candidates) vs the old search vs one ridge.

Planted truth from ``tests/engine/planted.py`` (SPM HRF, AR(1) noise, drift, raw units, two
runs with different stimuli; visual 3 / audio 1 / 32 mel distractors / word rate 1). For each
seed and planted region: held-out r of the default joint fit (all four spaces, banded ridge
with the centre + each space alone) over the r of the region's own space alone, the same for
the old banded search (centre + 19 Dirichlet candidates) and for one ridge over the
concatenated spaces; r of the default over an oracle ridge on the true HRF-convolved
regressors; CPU seconds of each joint fit.

Usage: ``.venv/bin/python bench/banded_dilution.py [n_seeds]``. Last line:
``bench banded_dilution: <worst region ratio> ratio (goal >= 0.9)``.
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "engine"))

from planted import make_planted  # noqa: E402

from engine.encoding.banded import simplex_candidates  # noqa: E402
from engine.encoding.fit import fit_encoding  # noqa: E402


def main(n_seeds: int = 3) -> None:
    warnings.simplefilter("ignore")
    worst = np.inf
    times = {"banded (default)": [], "banded (old 20 candidates)": [], "one ridge": []}
    for seed in range(n_seeds):
        p = make_planted(seed=seed, n_noise=100)
        fits = {}
        for name, kw in (("banded (default)", {}),
                         ("banded (old 20 candidates)", dict(banded_gammas=simplex_candidates(4, 20))),
                         ("one ridge", dict(multi_space="joint"))):
            t0 = time.process_time()
            fits[name] = fit_encoding(p.X, p.Y, tr_s=p.tr_s, **kw)
            times[name].append(time.process_time() - t0)
        for region, idx in p.regions.items():
            single = fit_encoding({region: p.X[region]}, p.Y, tr_s=p.tr_s).scores[idx].mean()
            oracle = fit_encoding({"true": p.true_regressors[region]}, p.Y, tr_s=p.tr_s,
                                  delays=[0]).scores[idx].mean()
            ratios = {k: f.scores[idx].mean() / single for k, f in fits.items()}
            worst = min(worst, ratios["banded (default)"])
            print(f"seed {seed} {region:6s} oracle r {oracle:.3f} single {single:.3f} | kept of single: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items())
                  + f" | default/oracle {fits['banded (default)'].scores[idx].mean() / oracle:.3f}")
        print(f"seed {seed} noise median r (default): {np.median(fits['banded (default)'].scores[p.noise]):+.4f}")
    for k, v in times.items():
        print(f"CPU s per joint fit, {k}: {np.mean(v):.2f}")
    print(f"bench banded_dilution: {worst:.3f} ratio (goal >= 0.9)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
