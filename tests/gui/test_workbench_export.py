"""Figure export: a high-resolution image of chosen views, and a movie with the stimulus beside the cortex."""

import numpy as np
import pytest


def test_export_views_image_at_panel_size_with_colours_and_bar(qtbot, session, tmp_path):
    from PIL import Image

    from gui.colormaps import MapStyle
    from gui.figure_export import export_views

    values = np.zeros(session.surface.n_vertices, np.float32)
    values[: session.surface.n_left] = 1.0             # left hemisphere only
    style = MapStyle(vmax=1.0, threshold=0.5, signed=False, cmap="RdBu_r")
    path = export_views(session.surface, values, style, tmp_path / "fig.png", views=("lateral", "ventral"),
                        panel_size=(300, 200), title="planted")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[1] == 600 and img.shape[0] > 400           # 2 views x 300, 2 rows x 200 + colour bar
    r, g, b = (img[..., i].astype(int) for i in range(3))
    red = (r > g + 60) & (r > b + 40)
    assert red[:200].mean() > 0.05          # top row: left hemisphere, coloured
    assert red[200:400].mean() < 0.001      # bottom row: right hemisphere, not
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="expected some of"):
        export_views(session.surface, values, style, tmp_path / "bad.png", views=("sideways",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_export_movie_frames_and_layout(qtbot, session, tmp_path):
    import av

    from gui.figure_export import export_movie

    run = session.run_names[0]
    path, n = export_movie(session, run, "measured", 1.0, 3.0, tmp_path / "m.mp4", fps=5.0, panel_size=(160, 120))
    assert n == 10
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 10
    h, w = frames[0].shape[:2]
    assert h == 240 and w > 320           # two 120-px cortex panels stacked, the stimulus frame beside them
    # the cortex half changes between TRs (TR 1 s: frames 0 and 5 are one TR apart)
    brain0, brain5 = frames[0][:, -160:].astype(int), frames[5][:, -160:].astype(int)
    assert np.abs(brain0 - brain5).mean() > 1.0
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="expected 'measured' or 'predicted'"):
        export_movie(session, run, "score", 0, 1, tmp_path / "x.mp4")
