"""``encoders``: does a multimodally trained encoder predict the brain better than a unimodal one?

Model A (multimodally trained, e.g. the CLIP vision tower, or the CLIP text tower) and model
B (unimodal, e.g. a ViT, or BERT) are fitted with the same settings on the same runs; their
held-out predictions are compared target by target (:func:`engine.encoding.stats.compare_models`:
two-sided block-swap permutations, block-bootstrap intervals, Benjamini-Hochberg FDR across
targets) and region by region (:func:`engine.encoding.regions.region_comparison`: the region
mean of Δr against the region means of the same null draws, FDR across regions).

Maps: ``delta_r`` (A - B), ``a_wins`` (Δr where A is better at FDR q <= alpha, else 0: "where
the multimodal model wins"), ``r_a`` and ``r_b``.

On the demo (no models needed): A = ``demo-av:visual_words`` (vision features of a model that
was trained with words: it also carries the picture-by-word interaction), B = ``demo-av:visual``.
The planted answer: A wins in the ``multimodal`` region and nowhere in noise-only regions.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, expected_found
from ..jobs import Progress
from ..encoding.stats import widening_text
from .common import (StudyResult, Timer, compare_job, describe_regions, features_for, finish, fits_dir_for,
                     fit_spaces_job, is_demo, load_study_data, parse_model_ref, region_effects,
                     significant_regions)

DEMO_MODELS = ["demo-av:visual_words", "demo-av:visual"]


def run_job(settings, token=None):
    timer = Timer()
    total = 6
    yield Progress(0, total, "encoders: reading the runs")
    options = settings.fit_options()
    data = load_study_data(settings, detrend=options.detrend)
    models = settings.models or (DEMO_MODELS if is_demo(data) else [])
    if len(models) != 2:
        raise ConfigError(expected_found("models of the encoders study", "two: the multimodally trained encoder "
                                         "A, then the unimodal encoder B (--models A B)", models))
    ref_a, ref_b = parse_model_ref(models[0]), parse_model_ref(models[1])
    timer.mark("load")
    sa, ka = yield from features_for(data, settings, ref_a, token=token, step=1, total=total)
    sb, kb = yield from features_for(data, settings, ref_b, token=token, step=2, total=total)
    timer.mark("features")
    fdir = fits_dir_for(data, settings)
    from ..jobs import nested

    res_a, _ = yield from nested(fit_spaces_job(data, sa, options, ref_a.label, ka, fdir, token), 3, total,
                                 f"fit {ref_a.label}")
    res_b, _ = yield from nested(fit_spaces_job(data, sb, options, ref_b.label, kb, fdir, token), 4, total,
                                 f"fit {ref_b.label}")
    timer.mark("fits")
    comp = yield from compare_job(res_a, res_b, settings, token, 5, total, "A vs B")
    table = region_effects(comp, data, settings.alpha, settings.ci)
    wins = np.where((comp.q_values <= settings.alpha) & (comp.difference > 0), comp.difference, 0.0)
    result = StudyResult(workflow="encoders", title=f"Encoders: {ref_a.label} (A) vs {ref_b.label} (B)",
                         out_dir=settings.out_dir, region_table=table, value_column="mean_difference")
    result.maps = {"delta_r": comp.difference, "a_wins": wins, "r_a": comp.scores_a, "r_b": comp.scores_b}
    result.map_meta = {
        "delta_r": {"label": f"Δr = r({ref_a.label}) − r({ref_b.label})", "signed": True, "unit": "Δr"},
        "a_wins": {"label": f"where {ref_a.label} wins (Δr at FDR q ≤ {settings.alpha:g})", "signed": True,
                   "unit": "Δr", "threshold": 1e-9},
        "r_a": {"label": f"r of {ref_a.label}", "signed": True, "unit": "r"},
        "r_b": {"label": f"r of {ref_b.label}", "signed": True, "unit": "r"},
        "_bars": {"label": "region mean Δr (A − B)"}, "_pair": {"a": "r_a", "b": "r_b"}}
    from .common import target_table

    result.tables = {"regions": table, "targets": target_table(comp)}
    a_better = significant_regions(table, "mean_difference", settings.alpha, +1)
    b_better = significant_regions(table, "mean_difference", settings.alpha, -1)
    n_t_a = int(np.sum((comp.q_values <= settings.alpha) & (comp.difference > 0)))
    n_t_b = int(np.sum((comp.q_values <= settings.alpha) & (comp.difference < 0)))
    result.findings = [
        f"Mean r: A ({ref_a.label}) {np.nanmean(comp.scores_a):.4f}, B ({ref_b.label}) "
        f"{np.nanmean(comp.scores_b):.4f}; mean Δr {np.nanmean(comp.difference):+.4f}.",
        f"A better than B (FDR q ≤ {settings.alpha:g}) in {len(a_better)} region(s): {describe_regions(a_better)}; "
        f"in {n_t_a} of {comp.difference.size} targets.",
        f"B better than A in {len(b_better)} region(s): {describe_regions(b_better)}; in {n_t_b} targets.",
        f"Statistics: {settings.n_perm} block swaps of {settings.block_trs} TRs (two-sided), {settings.n_boot} "
        f"block-bootstrap resamples ({int(settings.ci * 100)}% intervals){widening_text(comp.settings)}, "
        "Benjamini-Hochberg FDR."]
    return finish(result, data, settings, timer, {"A": res_a, "B": res_b})
