"""``layers``: the layer x region profile of one model, the best layer per region, normalised by the
noise ceiling where one is available.

Every layer (hidden state; or the layers named in the model reference) is fitted alone with the
same settings; each region's mean held-out r per layer, with a block-bootstrap interval of the
recording (``ci="time"``), gives the profile; the best layer of a region is the one with the
highest mean r. Further models (``--models M BASELINE...``) are fitted as baselines (e.g.
``word-rate``) and shown beside each region's best layer.

Noise ceiling: when several runs show the same episode, the repeatable part of each target's
response (:mod:`engine.encoding.noise_ceiling`): explainable variance of one run when runs are
scored one by one; when the runs of an episode were averaged (many subjects), the split-half
reliability of that mean. Scores are then also given as ``r / sqrt(ceiling)`` (targets with a
ceiling below 0.01 have none).

On the demo: ``demo-context`` (the word rate integrated over 1, 3, 9 and 27 s) with the
``word-rate`` baseline; the planted answer: the ``integration`` region peaks at ``ctx09s``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ConfigError, expected_found
from ..jobs import Progress, nested
from .common import (StudyResult, Timer, describe_regions, features_for, finish, fits_dir_for, fit_spaces_job,
                     is_demo, load_study_data, parse_model_ref)

DEMO_MODELS = ["demo-context", "word-rate"]
MIN_CEILING = 0.01


def noise_ceiling(data):
    """(n_targets,) ceiling (variance fraction) of what the fits score, or None; and how it was made."""
    from ..encoding.noise_ceiling import explainable_variance, split_half_reliability

    if not data.repeats:
        return None, "none (no episode seen more than once)"
    eps = [e for e in dict.fromkeys(data.episodes) if e in data.repeats]
    if not eps:
        return None, "none"
    parts, how = [], ""
    for e in eps:
        rep = data.repeats[e]
        if data.pooled:
            parts.append(split_half_reliability(rep, n_splits=50))
            how = f"split-half reliability of the mean of {rep.shape[0]} runs (Spearman-Brown)"
        else:
            parts.append(explainable_variance(rep))
            how = f"explainable variance of one run ({rep.shape[0]} repeats)"
    return np.nanmean(np.stack(parts), axis=0), how


def run_job(settings, token=None):
    from ..encoding.noise_ceiling import normalize_scores
    from ..encoding.regions import region_summary

    timer = Timer()
    options = settings.fit_options()
    data = load_study_data(settings, detrend=options.detrend)
    models = settings.models or (DEMO_MODELS if is_demo(data) else [])
    if len(models) < 1:
        raise ConfigError(expected_found("models of the layers study", "one model, then optional baselines "
                                         "(--models M [BASELINE ...])", models))
    ref = parse_model_ref(models[0])
    baselines = [parse_model_ref(m) for m in models[1:]]
    yield Progress(0, 3, "layers: features")
    timer.mark("load")
    feats, keys = yield from features_for(data, settings, ref.__class__(ref.model), all_layers=True, token=token,
                                          step=0, total=3)
    layers = list(ref.layers or feats)
    missing = [x for x in layers if x not in feats]
    if missing:
        raise ConfigError(expected_found(f"layers of {ref.model}", f"names among {list(feats)}", missing))
    base_feats = []
    for b in baselines:
        sp, k = yield from features_for(data, settings, b, token=token, step=1, total=3)
        base_feats.append((b, sp, k))
    timer.mark("features")
    fdir = fits_dir_for(data, settings)
    total = len(layers) + len(baselines)
    fits, rows, scores = {}, [], {}
    ceiling, ceiling_how = noise_ceiling(data)
    for i, layer in enumerate(layers):
        res, _ = yield from nested(fit_spaces_job(data, {layer: feats[layer]}, options, f"{ref.label} {layer}", keys,
                                                  fdir, token, extra_key={"layer": layer}), i, total,
                                   f"fit {layer}")
        fits[layer] = res
        scores[layer] = np.asarray(res.scores, np.float64)
        t = region_summary(res, data.labels, data.region_names, ci="time", n_boot=settings.n_boot,
                           ci_level=settings.ci, block_trs=settings.block_trs, seed=settings.seed)
        t.insert(0, "layer", layer)
        rows.append(t)
        timer.mark("fits")
    base_tables = []
    for j, (b, sp, k) in enumerate(base_feats):
        res, _ = yield from nested(fit_spaces_job(data, sp, options, b.label, k, fdir, token), len(layers) + j,
                                   total, f"fit baseline {b.label}")
        fits[f"baseline {b.label}"] = res
        bt = region_summary(res, data.labels, data.region_names, ci="time", n_boot=settings.n_boot,
                            ci_level=settings.ci, block_trs=settings.block_trs, seed=settings.seed)
        base_tables.append((b, res, bt))
        timer.mark("fits")
    long = pd.concat(rows, ignore_index=True)
    region_order = list(dict.fromkeys(rows[0]["region"]))
    lr = long.pivot(index="layer", columns="region", values="mean_score").reindex(index=layers, columns=region_order)
    lo = long.pivot(index="layer", columns="region", values="ci_low").reindex(index=layers, columns=region_order)
    hi = long.pivot(index="layer", columns="region", values="ci_high").reindex(index=layers, columns=region_order)
    lr.index.name = "layer"
    best = []
    for region in region_order:
        col = lr[region].to_numpy(float)
        k = int(np.nanargmax(col)) if np.isfinite(col).any() else 0
        row = long[(long["layer"] == layers[k]) & (long["region"] == region)].iloc[0]
        best.append({"region": region, "label": int(row["label"]), "n_targets": int(row["n_targets"]),
                     "best_layer": layers[k], "best_layer_index": k, "mean_r": float(row["mean_score"]),
                     "ci_low": float(row["ci_low"]), "ci_high": float(row["ci_high"])})
    table = pd.DataFrame(best)
    for b, res, bt in base_tables:
        table[f"baseline {b.label} r"] = bt["mean_score"].to_numpy()
        table[f"baseline {b.label} ci_low"] = bt["ci_low"].to_numpy()
        table[f"baseline {b.label} ci_high"] = bt["ci_high"].to_numpy()
    S = np.stack([scores[x] for x in layers])  # n_layers, n_targets
    max_r = np.nanmax(S, axis=0)
    # best layer of each region, painted on its targets where the region is reliably predicted
    # (interval above 0); elsewhere no layer is "best"
    best_t = np.full(data.n_targets, np.nan)
    labels = np.asarray(data.labels)
    for row in best:
        if row["ci_low"] > 0:
            best_t[labels == row["label"]] = row["best_layer_index"]
    result = StudyResult(workflow="layers", title=f"Layers of {ref.model}: profile per region",
                         out_dir=settings.out_dir, region_table=table, value_column="mean_r", layer_region=lr)
    result.maps = {"best_layer": best_t, "max_r": max_r}
    result.map_meta = {
        "best_layer": {"label": "best layer per region (where its interval is above 0)", "categorical": True,
                       "labels": layers,
                       "signed": False, "unit": "layer"},
        "max_r": {"label": "r of the best layer", "signed": True, "unit": "r"},
        "_bars": {"label": f"region mean r at its best layer ({int(settings.ci * 100)}% block-bootstrap interval)"}}
    for x in layers:
        result.maps[f"r_{x}"] = scores[x]
        result.map_meta[f"r_{x}"] = {"label": f"r of {x}", "signed": True, "unit": "r"}
    if ceiling is not None:
        from ..encoding.regions import make_regions, region_means

        norm = normalize_scores(max_r, ceiling, min_ceiling=MIN_CEILING)
        result.maps["noise_ceiling"] = ceiling
        result.maps["max_r_normalized"] = norm
        result.map_meta["noise_ceiling"] = {"label": f"noise ceiling ({ceiling_how})", "signed": False,
                                            "unit": "variance fraction"}
        result.map_meta["max_r_normalized"] = {"label": "best-layer r / sqrt(noise ceiling)", "signed": True,
                                               "unit": "fraction of ceiling"}
        regs = make_regions(data.labels, data.region_names, n_targets=data.n_targets)
        ceil_reg = region_means(ceiling, regs)
        table["noise_ceiling"] = ceil_reg
        with np.errstate(invalid="ignore", divide="ignore"):
            table["mean_r_normalized"] = np.where(ceil_reg > MIN_CEILING, table["mean_r"] / np.sqrt(
                np.where(ceil_reg > 0, ceil_reg, np.nan)), np.nan)
    result.tables = {"regions": table, "layer_region_long": long}
    top = table.sort_values("mean_r", ascending=False).head(6)
    result.findings = [
        "Best layer per region (top regions by r): " + "; ".join(
            f"{r.region}: {r.best_layer} (r {r.mean_r:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}])" for r in top.itertuples())
        + ".",
        "Mean r per layer over all targets: " + ", ".join(f"{x} {np.nanmean(scores[x]):.4f}" for x in layers) + ".",
        f"Noise ceiling: {ceiling_how}."]
    for b, res, bt in base_tables:
        result.findings.append(f"Baseline {b.label}: mean r {np.nanmean(res.scores):.4f}; best regions "
                               + describe_regions(list(bt.sort_values('mean_score', ascending=False)['region']), 4)
                               + ".")
    from .report import heatmap_png, profile_png

    show = list(top["region"])[:5]
    extra = [{"title": "Layer x region mean r", "kind": "heatmap",
              "png": heatmap_png(lr, "Mean r per layer and region", signed=False, label="r")},
             {"title": "Layer profiles of the best-predicted regions", "kind": "profile",
              "png": profile_png(lr, show, "Layer profile (95% intervals)", "mean r", lo, hi)}]
    return finish(result, data, settings, timer, fits, extra)
