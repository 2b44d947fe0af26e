"""Region summaries from atlas labels: means, bootstrap intervals, FDR fractions, layer tables."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from engine.encoding.regions import (
    layer_region_table,
    make_regions,
    region_comparison,
    region_means,
    region_summary,
)
from engine.encoding.stats import compare_models, pearson_r
from engine.errors import ConfigError, MismatchError


def _atlas(rng, n_targets=300, n_regions=5):
    labels = rng.integers(0, n_regions + 1, size=n_targets)  # 0 = unlabelled
    names = [f"R{k}" for k in range(1, n_regions + 1)]
    return labels, names


def test_region_means_match_pandas_groupby_and_skip_unlabelled_and_nan():
    rng = np.random.default_rng(0)
    labels, names = _atlas(rng)
    scores = rng.normal(0.1, 0.05, size=labels.size)
    scores[:7] = np.nan
    table = region_summary(scores, labels, names, ci=None)
    df = pd.DataFrame({"l": labels, "s": scores})
    df = df[df.l > 0]
    expected = df.groupby("l").s.mean()
    np.testing.assert_allclose(table.mean_score.to_numpy(), expected.to_numpy(), rtol=1e-12)
    assert table.region.tolist() == names
    assert table.n_targets.tolist() == df.groupby("l").size().tolist()
    assert table.frac_significant.isna().all()


def test_names_from_atlas_object_and_dict():
    from engine.io.atlases import Atlas
    labels = np.array([0, 2, 2, 3, 3, 3])
    atlas = Atlas("toy", "fsaverage5", labels, ["V1", "V2", "MT"])
    t = region_summary(np.arange(6.0), atlas, ci=None)
    assert t.region.tolist() == ["V2", "MT"]  # label 1 has no target
    np.testing.assert_allclose(t.mean_score, [1.5, 4.0])
    t2 = region_summary(np.arange(6.0), labels, {2: "b", 3: "c"}, ci=None)
    assert t2.region.tolist() == ["b", "c"]
    with pytest.raises(MismatchError):
        region_summary(np.arange(5.0), labels, ci=None)
    with pytest.raises(MismatchError):
        make_regions(labels, ["only_one"])
    with pytest.raises(ConfigError):
        make_regions(labels.astype(float))


def test_target_bootstrap_interval_covers_the_true_mean_at_its_level():
    rng = np.random.default_rng(1)
    n_regions = 200
    labels = np.repeat(np.arange(1, n_regions + 1), 30)
    scores = rng.normal(0.2, 0.1, size=labels.size)
    t = region_summary(scores, labels, ci="targets", n_boot=400, seed=0)
    covered = (t.ci_low <= 0.2) & (t.ci_high >= 0.2)
    assert 0.88 <= covered.mean() <= 0.99
    # interval width ~ 2 * 1.96 * sd / sqrt(n)
    np.testing.assert_allclose((t.ci_high - t.ci_low).mean(), 2 * 1.96 * 0.1 / np.sqrt(30), rtol=0.1)


def test_fraction_significant_uses_whole_brain_fdr():
    labels = np.array([1] * 10 + [2] * 10)
    p = np.concatenate([np.full(5, 1e-4), np.full(5, 0.5), np.full(10, 0.9)])
    t = region_summary(np.zeros(20), labels, p_values=p, ci=None)
    np.testing.assert_allclose(t.frac_significant, [0.5, 0.0])
    with pytest.raises(MismatchError):
        region_summary(np.zeros(20), labels, p_values=p[:3], ci=None)


def test_time_bootstrap_interval_and_region_null_p_values():
    rng = np.random.default_rng(2)
    labels = np.repeat([1, 2], 40)
    meas = [rng.standard_normal((120, 80)) for _ in range(2)]
    gain = np.where(labels == 1, 0.5, 0.0)
    preds = [y * gain + rng.standard_normal(y.shape) for y in meas]
    scores = pearson_r(np.concatenate(preds), np.concatenate(meas))
    result = SimpleNamespace(scores=scores, predictions=preds, measured=meas)
    t = region_summary(result, labels, ci="time", n_boot=300, block_trs=10, seed=0)
    assert t.ci_low[0] > 0.3 and t.ci_high[1] > 0 > t.ci_low[1]
    # the interval is around the observed mean, roughly symmetric
    assert t.ci_low[0] < t.mean_score[0] < t.ci_high[0]
    # region null: region 1 far above a null centred at 0, region 2 not
    null = rng.normal(0, 0.03, size=(99, 80))
    t2 = region_summary(result, labels, ci=None, null=null)
    assert t2.p_region[0] == pytest.approx(0.01)
    assert t2.p_region[1] > 0.05
    with pytest.raises(ConfigError):
        region_summary(scores, labels, ci="time")


def test_layer_region_table():
    rng = np.random.default_rng(3)
    labels = np.repeat([1, 2, 3], 10)
    names = ["EV", "AG", "IFG"]
    layers = {f"layer{k}": rng.normal(0.05 * k, 0.01, size=30) for k in (1, 2, 3, 4)}
    wide = layer_region_table(layers, labels, names)
    assert wide.shape == (4, 3)
    assert wide.index.tolist() == ["layer1", "layer2", "layer3", "layer4"]
    assert wide.columns.tolist() == names
    np.testing.assert_allclose(wide.loc["layer3", "AG"], layers["layer3"][10:20].mean())
    long = layer_region_table(layers, labels, names, value="long", n_boot=50)
    assert len(long) == 12 and {"layer", "ci_low", "ci_high"} <= set(long.columns)
    with pytest.raises(ConfigError):
        layer_region_table(layers, labels, names, value="nope")
    # a list of results, named by their feature space
    results = [SimpleNamespace(scores=v, space=k) for k, v in layers.items()]
    from_list = layer_region_table(results, labels, names)
    pd.testing.assert_frame_equal(from_list, wide)
    plain = layer_region_table(list(layers.values()), labels, names)
    assert plain.index.tolist() == ["layer 0", "layer 1", "layer 2", "layer 3"]


def test_region_comparison_detects_a_region_where_model_a_wins():
    rng = np.random.default_rng(4)
    labels = np.repeat([1, 2], 30)
    meas = [rng.standard_normal((150, 60)) for _ in range(2)]
    gain_a = np.where(labels == 1, 0.6, 0.3)
    pa = [y * gain_a + rng.standard_normal(y.shape) for y in meas]
    pb = [y * 0.3 + rng.standard_normal(y.shape) for y in meas]
    cmp = compare_models(pa, pb, measured=meas, n_perm=300, n_boot=200, seed=0)
    t = region_comparison(cmp, labels, ["A_wins", "tie"])
    assert t.p_value[0] == pytest.approx(1 / 301)
    assert t.q_value[0] < 0.05 and t.p_value[1] > 0.05
    assert t.ci_low[0] > 0 and t.ci_low[1] < 0 < t.ci_high[1]
    np.testing.assert_allclose(t.mean_difference, region_means(cmp.difference, make_regions(labels)))
    # what the name says: the fraction of targets where A's score is above B's
    a_gt_b = cmp.scores_a > cmp.scores_b
    np.testing.assert_allclose(t.frac_targets_a_better, [a_gt_b[:30].mean(), a_gt_b[30:].mean()])
    assert t.frac_targets_a_better[0] > 0.9 and 0.2 < t.frac_targets_a_better[1] < 0.8
    assert t.frac_targets_a_better_sig[0] > 0.3 and t.frac_targets_a_better_sig[1] < 0.1


def test_bundled_atlas_region_means_agree_with_atlas_vertex_to_parcel():
    # an independent implementation (engine.io.atlases, sparse one-hot) on a real parcellation
    from engine.io.atlases import load_atlas
    try:
        atlas = load_atlas("schaefer100", "fsaverage5")
    except Exception as exc:  # bundled resources missing in a partial checkout
        pytest.skip(f"bundled Schaefer 100 atlas unavailable: {exc}")
    rng = np.random.default_rng(5)
    scores = rng.normal(0.05, 0.1, size=atlas.n_vertices)
    scores[rng.integers(0, atlas.n_vertices, 500)] = np.nan
    t = region_summary(scores, atlas, ci=None)
    present = np.unique(atlas.labels[atlas.labels > 0])
    np.testing.assert_allclose(t.mean_score.to_numpy(), atlas.vertex_to_parcel(scores)[present - 1], rtol=1e-6)
    assert t.region.tolist() == [atlas.names[k - 1] for k in present]
    assert t.n_targets.sum() == np.sum(atlas.labels > 0)
