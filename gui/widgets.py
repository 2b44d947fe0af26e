"""Small widgets shared by the panes."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtWidgets import QLabel, QSizePolicy

__all__ = ["ElidedLabel"]


class ElidedLabel(QLabel):
    """A one-line label that never clips: text too long for its width ends in "…", and the
    whole text is its tooltip. It never widens its pane: its minimum size is its minimum
    width (not its text's), and it asks for at most :attr:`MAX_HINT_PX` of width.
    (An ``Ignored`` size policy is not used: a box layout then places such a label after
    the others, past the layout's right edge, where its text was cut.)

    :meth:`text` is the whole text; :meth:`shown_text` what is drawn.
    """

    def __init__(self, text: str = "", parent=None, mode: Qt.TextElideMode = Qt.ElideRight) -> None:
        super().__init__(parent)
        self._full = ""
        self._mode = mode
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
        self.setMinimumWidth(20)
        self.setWordWrap(False)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt name
        self._full = str(text)
        self.setToolTip(self._full)
        self._elide()

    MAX_HINT_PX = 360

    def text(self) -> str:
        return self._full

    def sizeHint(self) -> QSize:  # noqa: N802
        h = super().sizeHint().height()
        want = self.fontMetrics().horizontalAdvance(self._full) + 2 * self.margin() + 4
        return QSize(max(min(want, self.MAX_HINT_PX), self.minimumWidth()), h)

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(max(self.minimumWidth(), 20), super().minimumSizeHint().height())

    def shown_text(self) -> str:
        """What the label draws now (the text, elided to the width)."""
        return QLabel.text(self)

    def is_elided(self) -> bool:
        return self.shown_text() != self._full

    def _elide(self) -> None:
        width = self.contentsRect().width() - 2 * self.margin()
        shown = self._full if width <= 0 and not self.isVisible() else \
            self.fontMetrics().elidedText(self._full, self._mode, max(width, 0))
        if shown != QLabel.text(self):
            QLabel.setText(self, shown)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._elide()

    def changeEvent(self, event) -> None:  # noqa: N802 - a style sheet's font changes the width of the text
        super().changeEvent(event)
        if event.type() in (QEvent.FontChange, QEvent.StyleChange):
            self._elide()
