"""``ablation``: a joint model with and without one of its inputs (vision, audio or text blanked).

The same model is run twice on the episode: as it is, and with one input removed (mid-grey
frames, silence, or no words: :data:`engine.features.base.ABLATIONS`, part of the feature cache
key). Both feature sets are fitted with the same settings and compared target by target and
region by region (block-swap permutations, bootstrap intervals, FDR): Δr = r(full) − r(without
the input) > 0 is where alignment *drops* when the input is removed (Dong & Toneva 2023 asked
this of vision in language regions).

The change in the model's own loss (e.g. masked-language-model loss with and without vision)
needs a prediction head; the extractors load base models (no head), so the report says so
instead of guessing.

On the demo: ``demo-av:all`` without text; the planted answer is a drop in the ``language`` and
``multimodal`` regions, none in the visual or noise-only regions.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, expected_found
from ..jobs import Progress, nested
from .common import (StudyResult, Timer, compare_job, describe_regions, features_for, finish, fits_dir_for,
                     fit_spaces_job, is_demo, load_study_data, parse_model_ref, region_effects,
                     significant_regions)

DEMO_MODELS = ["demo-av:all"]


def own_loss_note(model: str) -> str:
    """Why the model's own loss is not reported for ``model`` (the loaded extractors have no head)."""
    from ..features.registry import get_spec

    try:
        family = get_spec(model).family
    except Exception:  # noqa: BLE001 - a folder without config: say so generally
        family = "?"
    return (f"Change in the model's own loss: not computed. The {family!r} extractor loads the base model "
            "(hidden states only, no prediction head), so a masked-language or next-token loss with and without "
            "the input is not available for this family; a head-bearing checkpoint (e.g. an MLM) would be needed.")


def run_job(settings, token=None):
    timer = Timer()
    total = 5
    yield Progress(0, total, "ablation: reading the runs")
    options = settings.fit_options()
    data = load_study_data(settings, detrend=options.detrend)
    models = settings.models or (DEMO_MODELS if is_demo(data) else [])
    if len(models) != 1:
        raise ConfigError(expected_found("models of the ablation study", "one joint model (--models M)", models))
    if settings.ablate not in ("vision", "audio", "text"):
        raise ConfigError(expected_found("ablated input", "vision, audio or text (--ablate)", settings.ablate))
    ref = parse_model_ref(models[0])
    timer.mark("load")
    full, kf = yield from features_for(data, settings, ref, token=token, step=1, total=total)
    abl, ka = yield from features_for(data, settings, ref, ablate=settings.ablate, token=token, step=2, total=total)
    timer.mark("features")
    fdir = fits_dir_for(data, settings)
    res_full, _ = yield from nested(fit_spaces_job(data, full, options, ref.label, kf, fdir, token), 3, total,
                                    f"fit {ref.label}")
    label_abl = f"{ref.label} without {settings.ablate}"
    res_abl, _ = yield from nested(fit_spaces_job(data, abl, options, label_abl, ka, fdir, token), 4, total,
                                   f"fit {label_abl}")
    timer.mark("fits")
    comp = yield from compare_job(res_full, res_abl, settings, token, 5, total, "with vs without")
    table = region_effects(comp, data, settings.alpha, settings.ci)
    drops = np.where((comp.q_values <= settings.alpha) & (comp.difference > 0), comp.difference, 0.0)
    result = StudyResult(workflow="ablation", title=f"Ablation: {ref.label} with vs without {settings.ablate}",
                         out_dir=settings.out_dir, region_table=table, value_column="mean_difference")
    result.maps = {"delta_r": comp.difference, "drop": drops, "r_full": comp.scores_a, "r_ablated": comp.scores_b}
    result.map_meta = {
        "delta_r": {"label": f"Δr = r(with {settings.ablate}) − r(without)", "signed": True, "unit": "Δr"},
        "drop": {"label": f"where alignment drops without {settings.ablate} (FDR q ≤ {settings.alpha:g})",
                 "signed": True, "unit": "Δr", "threshold": 1e-9},
        "r_full": {"label": f"r of {ref.label}", "signed": True, "unit": "r"},
        "r_ablated": {"label": f"r of {label_abl}", "signed": True, "unit": "r"},
        "_bars": {"label": f"region mean Δr (with − without {settings.ablate})"}}
    from .common import target_table

    result.tables = {"regions": table, "targets": target_table(comp)}
    dropped = significant_regions(table, "mean_difference", settings.alpha, +1)
    rose = significant_regions(table, "mean_difference", settings.alpha, -1)
    result.findings = [
        f"Mean r with {settings.ablate}: {np.nanmean(comp.scores_a):.4f}; without: {np.nanmean(comp.scores_b):.4f}.",
        f"Alignment drops without {settings.ablate} (FDR q ≤ {settings.alpha:g}) in {len(dropped)} region(s): "
        f"{describe_regions(dropped)}.",
        f"Alignment rises without {settings.ablate} in {len(rose)} region(s): {describe_regions(rose)}.",
        own_loss_note(ref.model)]
    return finish(result, data, settings, timer, {"full": res_full, "ablated": res_abl})
