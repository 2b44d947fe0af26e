"""The main window fits a 1366×768 laptop screen (less a 40 px task bar) with every pane visible."""

import pytest

SCREEN_W, SCREEN_H = 1366, 768 - 40


def _inside(window, widget):
    from PySide6.QtCore import QPoint, QRect

    top_left = widget.mapTo(window, QPoint(0, 0))
    return QRect(top_left, widget.size()), window.rect()


@pytest.mark.parametrize("with_project", [False, True])
def test_the_window_fits_1366x768_with_every_pane_visible(qtbot, request, with_project):
    from gui.main_window import MainWindow

    if with_project:
        w = request.getfixturevalue("window")
    else:
        w = MainWindow(interactive_3d=False)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
    for size in (w.minimumSizeHint(), w.minimumSize()):
        assert size.width() <= SCREEN_W and size.height() <= SCREEN_H, (size, "larger than 1366x728")
    w.resize(SCREEN_W, SCREEN_H)
    w.show()
    qtbot.wait(50)
    assert (w.width(), w.height()) == (SCREEN_W, SCREEN_H)   # not held larger by a minimum size
    panes = {"video": w.video_view, "time course": w.timecourse_view, "cortex": w.cortex_view}
    # the dock area at the bottom: the raised tab of Jobs / Regions / Studies / Quality checks
    # (tabs behind the raised one are moved out of sight, not hidden: their visible region is empty)
    docks = [d for d in (w.jobs_dock, w.regions_dock, w.studies_dock, w.qc_dock) if not d.visibleRegion().isEmpty()]
    assert len(docks) == 1, [d.windowTitle() for d in docks]
    panes.update({d.windowTitle(): d for d in docks})
    for name, pane in panes.items():
        assert pane.isVisible(), name
        rect, win = _inside(w, pane)
        assert rect.width() > 0 and rect.height() > 0, (name, rect)
        assert win.contains(rect), (name, rect, win)
    # every bottom tab, raised in turn, gets room too
    for d in (w.jobs_dock, w.regions_dock, w.studies_dock, w.qc_dock):
        d.show()
        d.raise_()
        qtbot.wait(20)
        rect, win = _inside(w, d)
        assert not d.visibleRegion().isEmpty(), d.windowTitle()
        assert rect.height() > 20 and win.contains(rect), (d.windowTitle(), rect)
    assert w.height() == SCREEN_H
