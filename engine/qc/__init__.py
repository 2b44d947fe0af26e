"""Quality checks before anyone trusts a map: data quality, stimulus-brain sync, reliability.

- :mod:`engine.qc.checks`: the :class:`Check` result (pass / warn / fail) and the thresholds.
- :mod:`engine.qc.brain`: per run (tSNR, carpet, motion/FD, global signal, duplicated TRs,
  raw units left undetrended, dead targets).
- :mod:`engine.qc.episode`: per episode (frame drops, audio/video length, timings, silences).
- :mod:`engine.qc.sync`: stimulus-brain lag by cross-correlation after HRF convolution.
- :mod:`engine.qc.reliability`: inter-run / inter-subject ceilings, scores as a fraction of them.
- :mod:`engine.qc.run`: everything for a project, a data folder or run files (``qc_path``,
  ``qc_project``, ``qc_files``, ``qc_job``); :mod:`engine.qc.report`: text, JSON, HTML.

Pure Python (numpy, scipy, pandas): no Qt, no VTK.
"""

from .checks import LEVELS, Check  # noqa: F401
