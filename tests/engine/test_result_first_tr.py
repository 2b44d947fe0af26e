"""A fit stores which TR of each run its first row stands for; the time base reads it, not a guess."""

from __future__ import annotations

import numpy as np

from engine.encoding.fit import fit_encoding
from engine.encoding.options import FitOptions
from engine.session.timebase import result_first_tr


def test_fit_stores_first_tr_and_the_time_base_uses_it():
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((60, 3)).astype(np.float32) for _ in range(3)]
    Y = [x @ rng.standard_normal((3, 4)).astype(np.float32) + rng.standard_normal((60, 4)).astype(np.float32)
         for x in X]
    res = fit_encoding(X, Y, options=FitOptions(delays=[1, 2], drop_edges=(3, 2), cv="loro"), tr_s=2.0)
    assert res.provenance["first_tr"] == 3
    assert res.predictions[0].shape[0] == 60 - 3 - 2
    first, note = result_first_tr(res, res.run_names[0], n_trs=60, n_rows=55)
    assert (first, note) == (3, None)              # stored: no "derived from drop_edges" note
    del res.provenance["first_tr"]                  # an older result: derived once, and said so
    first, note = result_first_tr(res, res.run_names[0], n_trs=60, n_rows=55)
    assert first == 3 and "drop_edges" in note
