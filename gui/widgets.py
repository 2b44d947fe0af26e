"""Small widgets shared by the panes."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QLabel, QSizePolicy

__all__ = ["ElidedLabel"]


class ElidedLabel(QLabel):
    """A one-line label that never clips: text too long for its width ends in "…", and the
    whole text is its tooltip. It never widens its pane (``Ignored`` horizontal size policy).

    :meth:`text` is the whole text; :meth:`shown_text` what is drawn.
    """

    def __init__(self, text: str = "", parent=None, mode: Qt.TextElideMode = Qt.ElideRight) -> None:
        super().__init__(parent)
        self._full = ""
        self._mode = mode
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.setMinimumWidth(20)
        self.setWordWrap(False)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt name
        self._full = str(text)
        self.setToolTip(self._full)
        self._elide()

    def text(self) -> str:
        return self._full

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
