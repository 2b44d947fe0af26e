"""Attention overlay: planted maps land where they must on the displayed frame; token strip; a
tiny ViT end to end (extract -> save -> register in the project -> shown)."""

import shutil

import numpy as np
import pytest

from engine.features.base import AttentionMaps
from engine.project import Project

GRID = (4, 6)                     # patch rows, columns over the 64 x 48 synthetic frames
KEPT_PATCH_TRS = [0, 2, 5]        # kept TRs (subsampled as a size budget would)
PEAK = {0: (3, 0), 2: (0, 0), 5: (2, 3)}   # rollout / layer-01 peak per kept TR
LAYER2_HEAD_PEAKS = [(3, 5), (1, 1)]        # layer02 at TR 5: head 0 peaks at (3,5) (1.0), head 1 at (1,1) (0.8)
TOKENS = ["[CLS]", "she", "wants", "coffee", "now", "[SEP]"]
TOKEN_TR = 4


def planted_patch_maps() -> AttentionMaps:
    n = len(KEPT_PATCH_TRS)
    maps = np.full((n, 2, 2) + GRID, 0.01, np.float32)      # n_kept, n_layers, n_heads, gh, gw
    rollout = np.full((n,) + GRID, 0.01, np.float32)
    for i, tr in enumerate(KEPT_PATCH_TRS):
        r, c = PEAK[tr]
        rollout[i, r, c] = 1.0
        rollout[i, max(r - 1, 0), c] = 0.4                    # a weaker neighbour: not the peak
        maps[i, 0, :, r, c] = 1.0
    i5 = KEPT_PATCH_TRS.index(5)
    maps[i5, 1, 0][LAYER2_HEAD_PEAKS[0]] = 1.0
    maps[i5, 1, 1][LAYER2_HEAD_PEAKS[1]] = 0.8
    return AttentionMaps(tr_indices=np.array(KEPT_PATCH_TRS), layers=["layer01", "layer02"], maps=maps,
                         rollout=rollout, kind="patches", meta={"grid": list(GRID), "heads": "all"})


def planted_token_maps(n_trs=6) -> AttentionMaps:
    n_keys = len(TOKENS) + 2                                  # padded to a longer context
    maps = np.zeros((n_trs, 1, 3, n_keys), np.float32)
    rollout = np.zeros((n_trs, n_keys), np.float32)
    tokens = []
    for k in range(n_trs):
        w = np.array([0.2, 0.05, 0.1, 0.05, 0.3, 0.3], np.float32)   # "now" strongest...
        if k == TOKEN_TR:
            w = np.array([0.2, 0.05, 0.1, 0.5, 0.05, 0.1], np.float32)   # ... except at TR 4: "coffee"
        rollout[k, :len(TOKENS)] = w
        maps[k, 0, :, :len(TOKENS)] = w
        tokens.append(list(TOKENS))
    return AttentionMaps(tr_indices=np.arange(n_trs), layers=["layer01"], maps=maps, rollout=rollout,
                         kind="tokens", meta={"tokens": tokens, "heads": "all"})


@pytest.fixture
def att_project(synthetic, tmp_path):
    from engine.features.attention import save_attention

    root = tmp_path / "att"
    shutil.copytree(synthetic.project_path.parent, root)
    project_file = root / synthetic.project_path.name
    save_attention(planted_patch_maps(), root / "results" / "vit_attention.h5")
    save_attention(planted_token_maps(), root / "results" / "lm_attention.h5")
    p = Project.load(project_file)
    p.extra["attention"] = {"vit": "results/vit_attention.h5", "minilm": "results/lm_attention.h5"}
    p.save(project_file)
    return project_file


@pytest.fixture
def att_window(qtbot, att_project):
    from gui.main_window import MainWindow

    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    qtbot.waitExposed(w)
    w.proxy_action.setChecked(False)          # raw frames: pixels compared exactly below
    assert w.open_project(att_project), w.errors_shown
    yield w
    w.close()


def qimage_rgb(img):
    from PySide6.QtGui import QImage

    img = img.convertToFormat(QImage.Format_RGB888)
    a = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    return a[:, : img.width() * 3].reshape(img.height(), img.width(), 3).copy()


def displayed_cells(window, grid):
    """Luminance of the displayed canvas at each patch centre, (gh, gw)."""
    canvas = window.video_view.canvas
    shot = qimage_rgb(canvas.grab().toImage())
    ratio = shot.shape[1] / canvas.width()
    r = canvas.image_rect()
    gh, gw = grid
    out = np.zeros(grid)
    for i in range(gh):
        for j in range(gw):
            x = int(round((r.x() + (j + 0.5) * r.width() / gw) * ratio))
            y = int(round((r.y() + (i + 0.5) * r.height() / gh) * ratio))
            px = shot[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(float).mean(0)
            out[i, j] = 0.2126 * px[0] + 0.7152 * px[1] + 0.0722 * px[2]
    return out


def canvas_rgb(window):
    return qimage_rgb(window.video_view.canvas.image)


def test_patch_overlay_peak_lies_over_the_planted_patch(att_window):
    w = att_window
    vv = w.video_view
    assert vv.attention_row.isVisibleTo(w) and not vv.attention_check.isChecked()
    assert [vv.attention_box.itemText(i) for i in range(vv.attention_box.count())] == ["vit", "minilm"]
    w.state.time = 5.2                                        # TR 5: a kept TR
    raw = canvas_rgb(w)
    i = w.state.frame_index
    np.testing.assert_array_equal(raw, w.session.video.frame(i))
    vv.set_attention(True, name="vit", layer="rollout", opacity=1.0)
    cells = displayed_cells(w, GRID)
    assert np.unravel_index(np.argmax(cells), GRID) == PEAK[5]
    assert cells.max() > cells.min() + 100                    # bright yellow over near-black
    assert vv.attention_label.text() == "TR 5 shown  ·  0.01–1"          # the range the colours stretch
    # one layer, one head, the mean of heads
    vv.set_attention(True, layer="layer02", head=1)
    assert np.unravel_index(np.argmax(displayed_cells(w, GRID)), GRID) == LAYER2_HEAD_PEAKS[1]
    vv.set_attention(True, head="mean")
    assert np.unravel_index(np.argmax(displayed_cells(w, GRID)), GRID) == LAYER2_HEAD_PEAKS[0]
    # TR 4 was not kept: the nearest kept TR before it (2) is shown, and the label says so
    vv.set_attention(True, layer="rollout")
    w.state.time = 4.5
    assert w.state.tr_index == 4
    assert np.unravel_index(np.argmax(displayed_cells(w, GRID)), GRID) == PEAK[2]
    assert "TR 2 shown" in vv.attention_label.text() and "before TR 4" in vv.attention_label.text()
    # half opacity: the frame shows through (neither the raw frame nor the bare map)
    vv.set_attention(True, opacity=0.5)
    half = canvas_rgb(w).astype(int)
    vv.set_attention(True, opacity=1.0)
    full = canvas_rgb(w).astype(int)
    raw = w.session.video.frame(w.state.frame_index).astype(int)
    np.testing.assert_allclose(half, (raw + full) / 2, atol=1.01)
    # toggling off restores the raw frame, pixel for pixel
    vv.set_attention(False)
    np.testing.assert_array_equal(canvas_rgb(w), w.session.video.frame(w.state.frame_index))
    assert vv.attention_label.text() == ""


def test_token_strip_shades_the_most_attended_word(att_window, qtbot):
    w = att_window
    vv = w.video_view
    vv.set_attention(True, name="minilm", layer="rollout")
    w.state.time = TOKEN_TR + 0.3
    qtbot.wait(10)
    strip = vv.token_strip
    assert strip.isVisible() and strip.tokens == TOKENS
    # special tokens do not set the scale: "coffee" is the strongest word, shaded fully
    assert strip.shading[TOKENS.index("coffee")] == pytest.approx(1.0)
    assert TOKENS[int(np.argmax(strip.shading))] == "coffee"
    # ... and on screen: the background band of each token's box, "coffee" the most amber
    shot = qimage_rgb(strip.grab().toImage())
    ratio = shot.shape[1] / strip.width()
    amber = {}
    for i, rect in strip.token_rects:
        y = int(round((rect.top() + 1) * ratio))
        band = shot[y, int(rect.left() * ratio) + 1:int(rect.right() * ratio) - 1].astype(float)
        amber[TOKENS[i]] = float(band[:, 0].mean())
    assert len(amber) == len(TOKENS)
    assert max(amber, key=amber.get) == "coffee", amber
    # token attention leaves the frame untouched
    np.testing.assert_array_equal(canvas_rgb(w), w.session.video.frame(w.state.frame_index))
    # another TR: "now" is the strongest there
    w.state.time = 1.2
    assert TOKENS[int(np.argmax(strip.shading))] == "now"
    vv.set_attention(False)
    assert not strip.isVisible()


def test_session_attention_choices_and_errors(att_project):
    from engine.errors import ConfigError
    from engine.session import ProjectSession, token_shading

    with ProjectSession.open(att_project, load_mesh=False) as s:
        assert s.attention_names() == ["vit", "minilm"]
        assert s.attention_layers("vit") == ["rollout", "layer01", "layer02"]
        assert s.attention_kind("minilm") == "tokens" and s.attention_heads("minilm") == 3
        assert [s.attention_tr("vit", t) for t in (0.0, 1.9, 2.0, 4.99, 5.5)] == [0, 0, 2, 2, 5]
        values, tokens = s.attention_at("vit", 5.5, layer=2, head=0)
        assert tokens is None and values.shape == GRID and values[LAYER2_HEAD_PEAKS[0]] == 1.0
        values, tokens = s.attention_at("minilm", 4.0)
        assert tokens == TOKENS and values.shape == (len(TOKENS),)       # padding cut off
        again = s.attention_at("minilm", 4.9)
        assert again[0] is values                                        # cached per kept TR
        with pytest.raises(ConfigError, match="rollout, layer01, layer02"):
            s.attention_at("vit", 1.0, layer="layer09")
        with pytest.raises(ConfigError, match="attention head"):
            s.attention_at("vit", 1.0, layer="layer01", head=7)
    # a file tied to another episode is not offered; a malformed entry says what was expected
    p = Project.load(att_project)
    p.extra["attention"]["other"] = {"path": "results/vit_attention.h5", "episode": "another"}
    p.extra["attention"]["mine"] = {"path": "results/vit_attention.h5", "episode": "ep"}
    p.save(att_project)
    with ProjectSession.open(att_project, load_mesh=False) as s:
        assert s.attention_names() == ["vit", "minilm", "mine"]
        s.project.extra["attention"]["bad"] = 3
        with pytest.raises(ConfigError, match="relative file path"):
            s.attention_names()
    # a dominant [CLS] does not wash out the words
    shade = token_shading(["[CLS]", "a", "coffee"], np.array([0.9, 0.05, 0.1]))
    np.testing.assert_allclose(shade, [1.0, 0.5, 1.0])


def test_vit_attention_end_to_end(qtbot, synthetic, tmp_path):
    """A tiny ViT saved with save_pretrained: attention extracted through the engine's job on
    the synthetic episode, saved, registered in the project, and shown over the frames."""
    pytest.importorskip("transformers")
    from engine.features.attention import load_attention, save_attention
    from engine.features.extract import episode_inputs, extract_attention_job
    from engine.jobs import run_sync
    from gui.main_window import MainWindow
    from tests.engine import test_features_support as S

    root = tmp_path / "e2e"
    shutil.copytree(synthetic.project_path.parent, root)
    project_file = root / synthetic.project_path.name
    vit = S.tiny_vit(tmp_path / "vit")                        # 32 px, 8 px patches: a 4 x 4 grid
    p = Project.load(project_file)
    maps = run_sync(extract_attention_job(episode_inputs(p, "ep"), str(vit), device="cpu",
                                          frames_per_window=1))
    assert maps.kind == "patches" and maps.rollout.shape == (6, 4, 4)
    save_attention(maps, root / "results" / "tiny_vit.h5")
    p.extra["attention"] = {"tiny-vit": "results/tiny_vit.h5"}
    p.save(project_file)

    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    qtbot.waitExposed(w)
    w.proxy_action.setChecked(False)
    assert w.open_project(project_file), w.errors_shown
    w.video_view.set_attention(True, name="tiny-vit", layer="rollout", opacity=1.0)
    w.state.time = 3.4
    expected = load_attention(root / "results" / "tiny_vit.h5").rollout[3].astype(np.float32)
    shown = displayed_cells(w, (4, 4))
    # brighter on screen where the model attended more (inferno is monotonic in lightness)
    from scipy.stats import spearmanr

    rho = spearmanr(shown.ravel(), expected.ravel()).statistic
    assert rho > 0.9, (rho, shown, expected)
    assert expected[np.unravel_index(np.argmax(shown), (4, 4))] == expected.max()   # (float16 ties)
    assert w.video_view.attention_label.text().startswith("TR 3 shown  ·  ")
    w.close()
