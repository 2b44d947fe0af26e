"""``joint``: does a joint (multimodal) representation explain anything beyond the unimodal ones?

Three answers side by side, all on held-out data with the same fit settings:

- **variance partitioning** of the unimodal spaces and the joint space (2-3 spaces): the unique
  R² of the joint space (R² of all spaces minus R² without it) and the shared parts
  (:func:`engine.encoding.partition.partition_regions`);
- **residual encoding** (Dong & Toneva 2023): the joint features with the unimodal features
  regressed out (per training fold), encoded on their own;
- **the test**: the model of all spaces against the model of the unimodal spaces only, target
  by target and region by region (block-swap permutations, bootstrap intervals, FDR). A region
  where the joint space adds significantly answers "yes"; none answers "no" (the finding of
  Dong & Toneva for MERLOT Reserve). The report states whichever outcome the data give.

Models: the unimodal spaces first, the joint space last (``--models U1 U2 J``). On the demo:
``demo-av:visual demo-av:language demo-av:joint``; the planted answer: the joint space adds in
the ``multimodal`` region only (its response is the picture-by-word product), not in the
``language`` region (word rate: unimodal) nor in noise-only regions.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ..errors import ConfigError, expected_found
from ..jobs import Progress, nested
from .common import (StudyResult, Timer, compare_job, describe_regions, features_for, finish, fits_dir_for,
                     fit_spaces_job, is_demo, load_study_data, parse_model_ref, region_effects,
                     significant_regions)

DEMO_MODELS = ["demo-av:visual", "demo-av:language", "demo-av:joint"]


def run_job(settings, token=None):
    from ..encoding.partition import partition_regions
    from ..encoding.regions import make_regions, region_means

    timer = Timer()
    options = settings.fit_options()
    data = load_study_data(settings, detrend=options.detrend)
    models = settings.models or (DEMO_MODELS if is_demo(data) else [])
    if not 2 <= len(models) <= 3:
        raise ConfigError(expected_found("models of the joint study", "2 or 3: the unimodal models, then the joint "
                                         "model last (--models U1 U2 J)", models))
    refs = [parse_model_ref(m) for m in models]
    names = [r.label for r in refs]
    if len(set(names)) != len(names):
        raise ConfigError(expected_found("models of the joint study", "distinct models", names))
    subsets = [s for k in range(1, len(names) + 1) for s in combinations(range(len(names)), k)]
    total = len(refs) + len(subsets) + 3
    yield Progress(0, total, "joint: reading the runs")
    timer.mark("load")
    spaces, keys = {}, {}
    for i, ref in enumerate(refs):
        sp, k = yield from features_for(data, settings, ref, token=token, step=1 + i, total=total)
        spaces[names[i]] = next(iter(sp.values())) if len(sp) == 1 else \
            [np.concatenate([sp[s][r] for s in sp], axis=1) for r in range(len(data.brain))]
        keys[names[i]] = k
    timer.mark("features")
    fdir = fits_dir_for(data, settings)
    r2, fits = {}, {}
    step = 1 + len(refs)
    for sub in subsets:
        label = "+".join(names[i] for i in sub)
        res, _ = yield from nested(fit_spaces_job(data, {names[i]: spaces[names[i]] for i in sub}, options, label,
                                                  [k for i in sub for k in keys[names[i]]], fdir, token),
                                   step, total, f"fit {label}")
        r2[label] = np.asarray(res.r2, dtype=np.float64)
        fits[label] = res
        step += 1
    regions_r2 = partition_regions(r2, names)
    joint_name, uni = names[-1], names[:-1]
    resid, _ = yield from nested(fit_spaces_job(data, {joint_name: spaces[joint_name]}, options,
                                                f"{joint_name} minus {'+'.join(uni)}",
                                                keys[joint_name], fdir, token,
                                                residual_of={u: spaces[u] for u in uni}), step, total, "residual")
    step += 1
    timer.mark("fits")
    full = fits["+".join(names)]
    uni_model = fits["+".join(uni)]
    comp = yield from compare_job(full, uni_model, settings, token, step, total, "all spaces vs unimodal")
    table = region_effects(comp, data, settings.alpha, settings.ci)
    regs = make_regions(data.labels, data.region_names, n_targets=data.n_targets)
    unique_joint = regions_r2[f"unique {joint_name}"]
    table["unique_r2_joint"] = region_means(unique_joint, regs)
    table["residual_r"] = region_means(np.asarray(resid.scores, np.float64), regs)
    adds = np.where((comp.q_values <= settings.alpha) & (comp.difference > 0), comp.difference, 0.0)
    result = StudyResult(workflow="joint", title=f"Joint vs unimodal: {joint_name} beyond {' and '.join(uni)}",
                         out_dir=settings.out_dir, region_table=table, value_column="mean_difference")
    result.maps = {"delta_r": comp.difference, "joint_adds": adds, "unique_r2_joint": unique_joint,
                   "residual_r": np.asarray(resid.scores, np.float64)}
    for k, v in regions_r2.items():
        if k != f"unique {joint_name}":
            result.maps[k.replace(" ", "_").replace("&", "_and_").replace(":", "_")] = v
    result.map_meta = {
        "delta_r": {"label": f"Δr = r(all spaces) − r({'+'.join(uni)})", "signed": True, "unit": "Δr"},
        "joint_adds": {"label": f"where {joint_name} adds beyond the unimodal spaces (FDR q ≤ {settings.alpha:g})",
                       "signed": True, "unit": "Δr", "threshold": 1e-9},
        "unique_r2_joint": {"label": f"unique R² of {joint_name}", "signed": True, "unit": "R²"},
        "residual_r": {"label": f"residual encoding: r of {joint_name} minus {'+'.join(uni)}", "signed": True,
                       "unit": "r"},
        "_bars": {"label": "region mean Δr (all spaces − unimodal)"}}
    for k in result.maps:
        result.map_meta.setdefault(k, {"label": k.replace("_", " "), "signed": True, "unit": "R²"})
    from .common import target_table

    tt = target_table(comp)
    tt["unique_r2_joint"] = unique_joint
    tt["residual_r"] = np.asarray(resid.scores)
    result.tables = {"regions": table, "targets": tt,
                     "r2_subsets": __import__("pandas").DataFrame({k: region_means(v, regs) for k, v in r2.items()},
                                                                  index=data.region_names).reset_index().rename(
                         columns={"index": "region"})}
    yes = significant_regions(table, "mean_difference", settings.alpha, +1)
    if yes:
        answer = (f"Yes: {joint_name} explains variance beyond {' and '.join(uni)} (FDR q ≤ {settings.alpha:g}) in "
                  f"{len(yes)} region(s): {describe_regions(yes)}.")
    else:
        answer = (f"No: {joint_name} adds nothing detectable beyond {' and '.join(uni)} in any region "
                  f"(FDR q ≤ {settings.alpha:g}); the joint representation's brain-relevant information is "
                  f"carried by the unimodal ones here.")
    result.findings = [
        answer,
        f"Mean unique R² of {joint_name}: {np.nanmean(unique_joint):+.4f} (whole map); residual encoding mean r "
        f"{np.nanmean(resid.scores):+.4f}.",
        f"Mean R²: all spaces {np.nanmean(r2['+'.join(names)]):.4f}, unimodal {np.nanmean(r2['+'.join(uni)]):.4f}."]
    fits["residual"] = resid
    return finish(result, data, settings, timer, fits)
