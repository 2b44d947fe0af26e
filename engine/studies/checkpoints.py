"""``checkpoints``: two checkpoints of one family (pretrained vs fine-tuned, or pretrained vs randomly
initialised), layer by layer and region by region.

Both checkpoints are run on the episode (every hidden state, or the layers named in the model
reference), each layer of each is fitted with the same settings, and the two are compared layer
by layer (block-swap permutations, bootstrap intervals, FDR across targets and across regions
within a layer). The layer x region table of Δr = r(A) − r(B) is the answer; the region bars show
each region at its layer of largest |Δr| (with that layer's interval and q: the choice of layer is
not corrected for).

On the demo: A = the pretrained MiniLM (``minilm``), B = the same architecture with random weights
(seed 0) saved with ``save_pretrained`` into ``<demo>/models/minilm-random`` (a real checkpoint
comparison, offline). The planted answer is the ``pretrained`` region (left inferior frontal gyrus,
:data:`engine.demo.STUDY_REGIONS`): it follows the top principal component of the pretrained
MiniLM's ``layer04`` states once the top 20 components of the random copy's ``layer04`` states and
the other drivers are regressed out (:func:`engine.demo.pretrained_component`, computed when the
demo is written, through the same feature extraction this study runs). So r(A) > r(B) there:
Δr ≈ +0.49 to +0.70 at every layer (measured on demo v4), bootstrap intervals well above 0, and
no effect in the noise-only regions (0-2 of 190 parcels at q <= 0.05 per layer). ``layer04``, the
layer the driver was taken from, gives A its best r there (0.64 against 0.53-0.57); the demo's
40-word vocabulary in random order gives the layers little else to differ on, so the pretrained
geometry already shows in the embeddings (``layer00``). The planted parcels' block-swap p is at
its floor 1 / (n_perm + 1) and their q 0.005-0.010: B's ridge shrinks its predictions there to almost
nothing (its alpha at the top of the grid), and the comparison standardises each model's
predictions before swapping blocks, so A's blocks do not dominate the swapped series; the swap
null is widened by sqrt(2) because the cross-validation folds train each other
(:func:`engine.encoding.stats.cv_variance_factor`). The two runs show one episode, so the default
CV holds the same segment out of both (within-run blocks): leave-one-run-out would reward
whichever model reproduces the other viewing's response (repeatability).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ConfigError, expected_found
from ..jobs import Progress, nested
from .common import (StudyResult, Timer, compare_job, demo_random_minilm, describe_regions, features_for, finish,
                     fits_dir_for, fit_spaces_job, is_demo, load_study_data, parse_model_ref, region_effects)


def same_settings(model_a: str, model_b: str) -> dict:
    """Read checkpoint B as A is read (pooling, window, context...) when B is a folder, not a registry name."""
    from ..features.registry import SPECS, get_spec

    if model_b in SPECS:
        return {}
    spec = get_spec(model_a)
    return dict(family=spec.family, modality=spec.modality, pooling=spec.pooling, window_s=spec.window_s,
                frames_per_window=spec.frames_per_window, context_words=spec.context_words)


def demo_models(data):
    random = demo_random_minilm(data)
    return ["minilm", random] if random else []


def run_job(settings, token=None):
    timer = Timer()
    options = settings.fit_options()
    data = load_study_data(settings, detrend=options.detrend)
    models = settings.models or (demo_models(data) if is_demo(data) else [])
    if len(models) != 2:
        raise ConfigError(expected_found("models of the checkpoints study", "two checkpoints of one family "
                                         "(--models A B: e.g. a fine-tuned folder and the pretrained one)", models))
    ref_a, ref_b = parse_model_ref(models[0]), parse_model_ref(models[1])
    yield Progress(0, 4, "checkpoints: features")
    timer.mark("load")
    fa, ka = yield from features_for(data, settings, ref_a.__class__(ref_a.model), all_layers=True, token=token,
                                     step=0, total=4)
    fb, kb = yield from features_for(data, settings, ref_b.__class__(ref_b.model), all_layers=True, token=token,
                                     step=1, total=4, overrides=same_settings(ref_a.model, ref_b.model))
    wanted = list(ref_a.layers or ref_b.layers or fa)
    layers = [x for x in wanted if x in fa and x in fb]
    if not layers:
        raise ConfigError(expected_found("layers shared by both checkpoints", f"names among {list(fa)}",
                                         f"{list(fb)} (different families?)"))
    timer.mark("features")
    fdir = fits_dir_for(data, settings)
    total = 3 * len(layers)
    rows, fits, diffs, comps = [], {}, {}, {}
    step = 0
    for layer in layers:
        ra, _ = yield from nested(fit_spaces_job(data, {layer: fa[layer]}, options, f"{ref_a.label} {layer}", ka,
                                                 fdir, token, extra_key={"layer": layer}), step, total,
                                  f"fit {ref_a.label} {layer}")
        rb, _ = yield from nested(fit_spaces_job(data, {layer: fb[layer]}, options, f"{ref_b.label} {layer}", kb,
                                                 fdir, token, extra_key={"layer": layer}), step + 1, total,
                                  f"fit {ref_b.label} {layer}")
        timer.mark("fits")
        comp = yield from compare_job(ra, rb, settings, token, step + 2, total, f"{layer}: A vs B")
        t = region_effects(comp, data, settings.alpha, settings.ci)
        t.insert(0, "layer", layer)
        rows.append(t)
        fits[f"A {layer}"], fits[f"B {layer}"] = ra, rb
        diffs[layer] = comp.difference
        comps[layer] = comp
        step += 3
    long = pd.concat(rows, ignore_index=True)
    lr = long.pivot(index="layer", columns="region", values="mean_difference").reindex(
        index=layers, columns=list(dict.fromkeys(rows[0]["region"])))
    lr.index.name = "layer"
    # each region at its layer of largest |Δr|
    best_rows = []
    for region, g in long.groupby("region", sort=False):
        i = int(np.nanargmax(np.abs(g["mean_difference"].to_numpy(float)))) if np.isfinite(
            g["mean_difference"].to_numpy(float)).any() else 0
        best_rows.append(g.iloc[i])
    table = pd.DataFrame(best_rows).reset_index(drop=True)
    table = table[["region", "label", "n_targets", "layer", "mean_a", "mean_b", "mean_difference", "ci_low",
                   "ci_high", "p_value", "q_value"]]
    result = StudyResult(workflow="checkpoints", title=f"Checkpoints: {ref_a.label} (A) vs {ref_b.label} (B), "
                                                       f"layer by layer",
                         out_dir=settings.out_dir, region_table=table, value_column="mean_difference",
                         layer_region=lr)
    d = np.stack([diffs[x] for x in layers])  # n_layers, n_targets
    result.maps = {f"delta_r_{x}": diffs[x] for x in layers}
    result.map_meta = {f"delta_r_{x}": {"label": f"Δr {x} = r({ref_a.label}) − r({ref_b.label})", "signed": True,
                                        "unit": "Δr"} for x in layers}
    idx = np.nanargmax(np.where(np.isfinite(d), np.abs(d), -1), axis=0)
    result.maps["delta_r_best_layer"] = d[idx, np.arange(d.shape[1])]
    result.map_meta["delta_r_best_layer"] = {"label": "Δr at each target's layer of largest |Δr|", "signed": True,
                                             "unit": "Δr"}
    result.map_meta["_bars"] = {"label": "region Δr (A − B) at the region's layer of largest |Δr|"}
    # the two checkpoints' own scores at the layer of largest mean |Δr| (side by side in the window)
    top = layers[int(np.nanargmax([np.nanmean(np.abs(diffs[x])) for x in layers]))]
    result.maps["r_a"], result.maps["r_b"] = comps[top].scores_a, comps[top].scores_b
    result.map_meta["r_a"] = {"label": f"r of {ref_a.label} {top}", "signed": True, "unit": "r", "figure": False}
    result.map_meta["r_b"] = {"label": f"r of {ref_b.label} {top}", "signed": True, "unit": "r", "figure": False}
    result.map_meta["_pair"] = {"a": "r_a", "b": "r_b", "layer": top}
    result.tables = {"regions": table, "layer_region_long": long}
    sig = long[(long["q_value"] <= settings.alpha)]
    a_better = sig[sig["mean_difference"] > 0]
    b_better = sig[sig["mean_difference"] < 0]
    per_layer = ", ".join(f"{x} {np.nanmean(diffs[x]):+.4f}" for x in layers)
    result.findings = [
        f"Mean Δr per layer (A − B): {per_layer}.",
        f"A better than B (FDR q ≤ {settings.alpha:g} within a layer) in {a_better['region'].nunique()} region(s): "
        f"{describe_regions(list(dict.fromkeys(a_better.sort_values('mean_difference', ascending=False)['region'])))}.",
        f"B better than A in {b_better['region'].nunique()} region(s): "
        f"{describe_regions(list(dict.fromkeys(b_better.sort_values('mean_difference')['region'])))}.",
        f"{len(layers)} layers x {len(rows[0])} regions compared; FDR is within each layer (not across layers)."]
    extra = []
    from .report import heatmap_png

    extra.append({"title": "Layer x region Δr (A − B)", "kind": "heatmap",
                  "png": heatmap_png(lr, "Δr per layer and region (regions with the largest effects)", label="Δr")})
    return finish(result, data, settings, timer, fits, extra)
