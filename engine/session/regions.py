"""Region tables: how well a result predicts each atlas region, and two results compared.

:class:`RegionTables` answers the Regions pane from the engine's statistics
(:mod:`engine.encoding.regions`, :mod:`engine.encoding.stats`); it only knows the atlas of the
maps and how to load a result of the project by name.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import numpy as np

from ..errors import DataError, MismatchError, expected_found
from ..jobs import Progress

__all__ = ["RegionTables"]


class RegionTables:
    """Per-region tables of the project's results.

    Parameters
    ----------
    atlas : Atlas or None
    parcel_atlas : Atlas or None
        Set in parcel mode (one target per parcel of ``atlas``).
    surface : Surface or None
        ``n_left`` splits hemispheres (left vertices come first).
    load_result : callable
        ``load_result(name or None) -> (name, EncodingResult)``; None is the open result.
    """

    def __init__(self, atlas, parcel_atlas, surface, load_result: Callable) -> None:
        self.atlas = atlas
        self.parcel_atlas = parcel_atlas
        self.surface = surface
        self._load_result = load_result

    def labels(self) -> Tuple[np.ndarray, np.ndarray]:
        """Atlas label per target of a result (n_targets,) and vertices per label (n_labels + 1,)."""
        if self.atlas is None:
            raise DataError("region table: expected an atlas in the project, found none")
        vertex_labels = np.asarray(self.atlas.labels).astype(np.int64)
        n_vertices = np.bincount(np.clip(vertex_labels, 0, None), minlength=len(self.atlas.names) + 1)
        if self.parcel_atlas is not None:   # one target per parcel
            return np.arange(1, len(self.atlas.names) + 1, dtype=np.int64), n_vertices
        return vertex_labels, n_vertices

    def hemispheres(self) -> Dict[int, str]:
        """"left", "right" or "both" per atlas label (left-hemisphere vertices come first)."""
        labels = np.asarray(self.atlas.labels).astype(np.int64)
        n_left = int(self.surface.n_left) if self.surface is not None else labels.size // 2
        left = np.bincount(np.clip(labels[:n_left], 0, None), minlength=len(self.atlas.names) + 1)
        right = np.bincount(np.clip(labels[n_left:], 0, None), minlength=len(self.atlas.names) + 1)
        return {k: ("both" if left[k] and right[k] else "left" if left[k] else "right")
                for k in range(1, len(self.atlas.names) + 1)}

    def table(self, result_name: Optional[str] = None, n_boot: int = 1000, ci_level: float = 0.95, seed: int = 0):
        """One row per atlas region: how well the result predicts it.

        Parameters
        ----------
        result_name : str, optional
            A key of ``project.results`` (default: the open result).
        n_boot, ci_level, seed
            Bootstrap over the region's targets (:func:`engine.encoding.regions.region_summary`,
            ``ci="targets"``).

        Returns
        -------
        DataFrame with ``region, label, hemisphere, n_vertices, n_targets, mean_r, ci_low,
        ci_high, frac_positive`` (fraction of the region's targets with r > 0), sorted by
        ``mean_r`` descending (NaN last).
        """
        from ..encoding.regions import make_regions, region_means, region_summary

        _, result = self._load_result(result_name)
        scores = np.asarray(result.scores, dtype=np.float64).ravel()   # n_targets
        labels, n_vertices = self.labels()
        names = list(self.atlas.names)
        table = region_summary(scores, labels, names, ci="targets", n_boot=n_boot, ci_level=ci_level, seed=seed)
        regions = make_regions(labels, names, n_targets=scores.size)
        positive = np.where(np.isfinite(scores), (scores > 0).astype(np.float64), np.nan)
        hemis = self.hemispheres()
        table = table.rename(columns={"mean_score": "mean_r"}).drop(columns=["frac_significant"])
        table["frac_positive"] = region_means(positive, regions)
        table.insert(2, "hemisphere", [hemis[int(k)] for k in table["label"]])
        table.insert(3, "n_vertices", [int(n_vertices[int(k)]) for k in table["label"]])
        return table.sort_values("mean_r", ascending=False, na_position="last", kind="stable").reset_index(drop=True)

    def comparison_job(self, other: str, n_perm: int = 1000, n_boot: int = 1000, seed: int = 0, token=None):
        """Job: region by region, the open result minus result ``other`` (paired block tests).

        Runs :func:`engine.encoding.stats.compare_models_job` (block-swap permutations, block
        bootstrap) on the two results' held-out predictions, then
        :func:`engine.encoding.regions.region_comparison` on the atlas.

        Returns
        -------
        DataFrame with ``region, label, n_targets, mean_a, mean_b, mean_difference`` (the test
        statistic), ``delta_r`` (region mean of the saved scores' difference, open minus
        ``other``), ``ci_low, ci_high`` (of the statistic), ``p_value, q_value`` (BH-FDR across
        regions), ``frac_targets_a_better``.

        Raises
        ------
        MismatchError
            When the two results do not cover the same targets or runs.
        """
        from ..encoding.regions import make_regions, region_comparison, region_means
        from ..encoding.stats import compare_models_job

        mine_name, mine = self._load_result(None)
        yield Progress(0, 0, f"loading result {other!r}")
        _, theirs = self._load_result(other)
        n_a, n_b = np.asarray(mine.scores).size, np.asarray(theirs.scores).size
        if n_a != n_b:
            raise MismatchError(expected_found(f"result {other!r} targets", f"{n_a} like {mine_name!r}", n_b)
                                + " (results of different targets cannot be compared)")
        runs_a, runs_b = list(mine.run_names or []), list(theirs.run_names or [])
        if runs_a and runs_b and runs_a != runs_b:
            raise MismatchError(expected_found(f"runs of result {other!r}", runs_a, runs_b))
        if token is not None:
            token.raise_if_cancelled()
        comparison = yield from compare_models_job(mine, theirs, n_perm=n_perm, n_boot=n_boot, seed=seed,
                                                   token=token)
        labels, _ = self.labels()
        names = list(self.atlas.names)
        table = region_comparison(comparison, labels, names)
        # delta r of the saved scores (the region table's mean r columns); the test statistic
        # ``mean_difference`` centres both models' predictions alike, so it can differ by ~1e-3
        diff = np.asarray(mine.scores, dtype=np.float64).ravel() - np.asarray(theirs.scores, dtype=np.float64).ravel()
        table.insert(6, "delta_r", region_means(diff, make_regions(labels, names, n_targets=diff.size)))
        return table
