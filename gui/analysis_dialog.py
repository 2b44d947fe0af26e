"""Run > New analysis…: a form that builds an :class:`engine.pipeline.AnalysisSpec`.

A view only: the models and their layers come from :func:`engine.pipeline.list_models` /
:func:`engine.pipeline.model_layers`, every setting is checked by the engine's own
``AnalysisSpec`` / :class:`~engine.encoding.options.FitOptions` (errors are shown inline under
the form, never as tracebacks) and the analysis runs as a job of the main window
(:meth:`gui.main_window.MainWindow.start_analysis`). The last settings are remembered
(``QSettings``, as ``spec.to_dict()`` JSON); a result of the same name is replaced only after
the user agrees.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QGridLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QMessageBox, QPushButton, QSpinBox, QVBoxLayout)

from engine.encoding.options import FitOptions
from engine.errors import AlignScopeError
from engine.pipeline import AnalysisSpec, list_models, model_layers
from engine.pipeline.features import model_info

__all__ = ["AnalysisDialog", "parse_layers", "parse_numbers", "SETTINGS_KEY"]

SETTINGS_KEY = "analysis/last_spec"
POOLINGS = [("model default", None), ("mean over tokens/patches", "mean"), ("CLS token", "cls"),
            ("last token", "last")]
DTYPES = [("auto", None), ("float32", "float32"), ("float16", "float16"), ("bfloat16", "bfloat16")]
ABLATIONS = [("none (all inputs)", "none"), ("without vision", "vision"), ("without audio", "audio"),
             ("without text", "text")]
CVS = [("auto (from the data)", "auto"), ("leave one run out", "loro"), ("blocked within runs", "within-run"),
       ("grouped by stimulus", "stimulus"), ("K folds over runs", "k")]
DETRENDS = [("none", None), ("constant (0)", 0), ("linear (1)", 1), ("quadratic (2)", 2), ("cubic (3)", 3)]
CONFOUNDS = [("none", None), ("motion6", "motion6"), ("motion24", "motion24"), ("motion24+wm_csf", "motion24+wm_csf")]
MULTI = [("banded ridge (a penalty per space)", "banded"), ("one ridge over all spaces", "joint")]


def parse_numbers(text: str, what: str, kind: Callable = float) -> Optional[List]:
    """``"1, 2 3"`` -> [1, 2, 3] (None for an empty field); ValueError naming ``what`` otherwise."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        return None
    out = []
    for p in parts:
        try:
            v = kind(p)
        except ValueError:
            raise ValueError(f"{what}: expected numbers separated by commas, found {p!r}") from None
        out.append(v)
    return out


def parse_layers(text: str) -> Optional[List]:
    """Layers as the pipeline takes them: ints (hidden-state indices, -1 = last), floats in
    (0, 1] (relative depth) or names (``layer06``, low-level feature names); None when empty."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        return None
    out: List = []
    for p in parts:
        try:
            out.append(int(p))
            continue
        except ValueError:
            pass
        try:
            v = float(p)
        except ValueError:
            out.append(p)   # a layer name
            continue
        if not 0 < v <= 1:
            raise ValueError(f"layers: expected indices (0, 1, -1…) or relative depths in (0, 1], found {p}")
        out.append(v)
    return out


def cuda_offered() -> bool:
    """Offer CUDA when torch (if already loaded) says so, or when an NVIDIA driver is present
    (importing torch here would slow the dialog down; the engine checks again when it runs)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return bool(torch.cuda.is_available())
    return Path("/proc/driver/nvidia/version").exists()


def _combo(items) -> QComboBox:
    box = QComboBox()
    for label, value in items:
        box.addItem(label, value)
    return box


def _select(box: QComboBox, value) -> None:
    for i in range(box.count()):
        if box.itemData(i) == value:
            box.setCurrentIndex(i)
            return


class AnalysisDialog(QDialog):
    """The analysis form for one open project.

    Signals
    -------
    start_requested(AnalysisSpec): the user pressed Run and the settings are valid.
    """

    start_requested = Signal(object)

    def __init__(self, session, project_path, parent=None, settings: Optional[QSettings] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New analysis")
        self.setObjectName("analysisDialog")
        self.session = session
        self.project_path = Path(project_path)
        self.settings = settings or QSettings("AlignScope", "AlignScope")
        self.last_spec: Optional[AnalysisSpec] = None
        #: asked before replacing a result of the same name (tests replace it)
        self.confirm_overwrite: Callable[[str], bool] = self._ask_overwrite
        self._build()
        self._fill_models()
        self._fill_runs()
        self.restore()
        self._model_changed()

    # ---- form ------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        # model
        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        row = QHBoxLayout()
        self.model_box = QComboBox()
        self.model_box.setMinimumWidth(260)
        self.model_box.setToolTip("Registry models, models found in the Hugging Face cache (offline), or a local folder")
        self.model_box.currentIndexChanged.connect(self._model_changed)
        self.folder_button = QPushButton("Local folder…")
        self.folder_button.setToolTip("A folder holding a Hugging Face model (config.json and weights)")
        self.folder_button.clicked.connect(self._choose_folder)
        row.addWidget(self.model_box, 1)
        row.addWidget(self.folder_button)
        form.addRow("Model", row)
        self.model_detail = QLabel("")
        self.model_detail.setObjectName("paneHint")
        self.model_detail.setWordWrap(True)
        form.addRow("", self.model_detail)
        self.layers_edit = QLineEdit()
        self.layers_edit.setPlaceholderText("default — e.g. 0.5, 1.0 or 3, 6")
        self.layers_edit.setToolTip("Hidden-state indices (0 = embeddings, -1 = last) or relative depths in (0, 1]; "
                                    "names for low-level features")
        form.addRow("Layers", self.layers_edit)
        self.per_layer_box = _combo([("one model of all layers", False), ("one result per layer", True)])
        form.addRow("Layers fit as", self.per_layer_box)
        self.pooling_box = _combo(POOLINGS)
        form.addRow("Pooling", self.pooling_box)
        ctx = QHBoxLayout()
        self.window_spin = QDoubleSpinBox()
        self.window_spin.setRange(0.0, 120.0)
        self.window_spin.setDecimals(2)
        self.window_spin.setSuffix(" s")
        self.window_spin.setSpecialValueText("default")
        self.window_spin.setToolTip("Stimulus window ending at each TR's end (vision/audio models); 0 = default")
        self.context_spin = QSpinBox()
        self.context_spin.setRange(0, 4096)
        self.context_spin.setSpecialValueText("default")
        self.context_spin.setSuffix(" words")
        self.context_spin.setToolTip("Language models: words of context up to each TR's end; 0 = default")
        ctx.addWidget(self.window_spin)
        ctx.addWidget(QLabel("text context"))
        ctx.addWidget(self.context_spin)
        ctx.addStretch(1)
        form.addRow("Stimulus window", ctx)
        dev = QHBoxLayout()
        devices = [("auto", "auto"), ("cpu", "cpu")] + ([("cuda", "cuda")] if cuda_offered() else [])
        self.device_box = _combo(devices)
        self.dtype_box = _combo(DTYPES)
        dev.addWidget(self.device_box)
        dev.addWidget(QLabel("dtype"))
        dev.addWidget(self.dtype_box)
        dev.addStretch(1)
        form.addRow("Device", dev)
        self.ablate_box = _combo(ABLATIONS)
        self.ablate_box.setToolTip("Run the model with one of its inputs removed (multimodal models)")
        form.addRow("Modality ablation", self.ablate_box)

        # runs
        runs_box = QGroupBox("Episodes and runs")
        rl = QVBoxLayout(runs_box)
        self.runs_list = QListWidget()
        self.runs_list.setMinimumHeight(90)
        self.runs_list.setToolTip("Runs to fit (one space at a time); all checked = every run of that space")
        rl.addWidget(self.runs_list)

        # fit
        fit_box = QGroupBox("Fit")
        grid = QGridLayout(fit_box)
        r = 0
        self.delay_first = QDoubleSpinBox()
        self.delay_last = QDoubleSpinBox()
        for spin in (self.delay_first, self.delay_last):
            spin.setRange(0.0, 60.0)
            spin.setDecimals(1)
            spin.setSuffix(" s")
        self.delay_first.setToolTip("FIR delays cover this window after the stimulus, whatever the TR")
        drow = QHBoxLayout()
        drow.addWidget(self.delay_first)
        drow.addWidget(QLabel("to"))
        drow.addWidget(self.delay_last)
        drow.addStretch(1)
        grid.addWidget(QLabel("Delays"), r, 0)
        grid.addLayout(drow, r, 1)
        r += 1
        self.delays_edit = QLineEdit()
        self.delays_edit.setPlaceholderText("from the seconds above — or TRs, e.g. 1, 2, 3, 4")
        self.delays_edit.setToolTip("Expert: FIR delays in TRs; when given they replace the window in seconds")
        grid.addWidget(QLabel("Delays in TRs"), r, 0)
        grid.addWidget(self.delays_edit, r, 1)
        r += 1
        arow = QHBoxLayout()
        self.alpha_lo = QSpinBox()
        self.alpha_hi = QSpinBox()
        for spin in (self.alpha_lo, self.alpha_hi):
            spin.setRange(-12, 15)
            spin.setPrefix("1e")
        self.alpha_n = QSpinBox()
        self.alpha_n.setRange(1, 100)
        self.alpha_n.setSuffix(" values")
        arow.addWidget(self.alpha_lo)
        arow.addWidget(QLabel("to"))
        arow.addWidget(self.alpha_hi)
        arow.addWidget(self.alpha_n)
        arow.addStretch(1)
        grid.addWidget(QLabel("Alpha grid"), r, 0)
        grid.addLayout(arow, r, 1)
        r += 1
        crow = QHBoxLayout()
        self.cv_box = _combo(CVS)
        self.cv_k = QSpinBox()
        self.cv_k.setRange(2, 100)
        self.cv_k.setPrefix("K = ")
        self.cv_box.currentIndexChanged.connect(lambda _i: self.cv_k.setEnabled(self.cv_box.currentData() == "k"))
        crow.addWidget(self.cv_box)
        crow.addWidget(self.cv_k)
        crow.addStretch(1)
        grid.addWidget(QLabel("Cross-validation"), r, 0)
        grid.addLayout(crow, r, 1)
        r += 1
        prow = QHBoxLayout()
        prow2 = QHBoxLayout()
        self.detrend_box = _combo(DETRENDS)
        self.highpass_spin = QDoubleSpinBox()
        self.highpass_spin.setRange(0.0, 1000.0)
        self.highpass_spin.setDecimals(0)
        self.highpass_spin.setSuffix(" s")
        self.highpass_spin.setSpecialValueText("off")
        self.highpass_spin.setToolTip("High-pass cut-off period (cosine drift basis), e.g. 128 s; 0 = off")
        self.confounds_box = _combo(CONFOUNDS)
        prow.addWidget(QLabel("detrend"))
        prow.addWidget(self.detrend_box)
        prow.addWidget(QLabel("high-pass"))
        prow.addWidget(self.highpass_spin)
        prow.addStretch(1)
        prow2.addWidget(QLabel("confounds"))
        prow2.addWidget(self.confounds_box)
        prow2.addStretch(1)
        grid.addWidget(QLabel("Preprocessing"), r, 0)
        grid.addLayout(prow, r, 1)
        r += 1
        grid.addLayout(prow2, r, 1)
        r += 1
        self.multi_box = _combo(MULTI)
        grid.addWidget(QLabel("Several spaces"), r, 0)
        grid.addWidget(self.multi_box, r, 1)
        r += 1
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("default: the model and its layers")
        grid.addWidget(QLabel("Result name"), r, 0)
        grid.addWidget(self.name_edit, r, 1)
        r += 1
        hint = QLabel("Defaults suit real data: delays cover 2–10 s after the stimulus at any TR, runs are "
                      "linearly detrended and z-scored, the CV is chosen from the runs.")
        hint.setObjectName("paneHint")
        hint.setWordWrap(True)
        grid.addWidget(hint, r, 0, 1, 2)
        grid.setRowStretch(r + 1, 1)
        grid.setColumnStretch(1, 1)

        self.error_label = QLabel("")
        self.error_label.setObjectName("formError")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c92a2a;")
        self.error_label.setVisible(False)
        buttons = QDialogButtonBox()
        self.run_button = buttons.addButton("Run analysis", QDialogButtonBox.AcceptRole)
        self.run_button.setDefault(True)
        self.reset_button = buttons.addButton("Defaults", QDialogButtonBox.ResetRole)
        buttons.addButton(QDialogButtonBox.Cancel)
        self.run_button.clicked.connect(self.run_analysis)
        self.reset_button.clicked.connect(lambda: self.apply_spec(AnalysisSpec()))
        buttons.rejected.connect(self.reject)

        top = QHBoxLayout()
        left = QVBoxLayout()
        left.addWidget(model_box)
        left.addWidget(runs_box, 1)
        top.addLayout(left, 1)
        top.addWidget(fit_box, 1)
        lay.addLayout(top)
        lay.addWidget(self.error_label)
        lay.addWidget(buttons)

    def _fill_models(self) -> None:
        self.model_box.blockSignals(True)
        self.model_box.clear()
        try:
            models = list_models()
        except AlignScopeError as exc:
            models = []
            self.show_error(f"models: {exc}")
        for m in models:
            label = m.name if m.source != "hf-cache" else f"{m.name} (Hugging Face cache)"
            if not m.available:
                label += " — weights not found"
            self.model_box.addItem(label, m.name)
            i = self.model_box.count() - 1
            self.model_box.setItemData(i, f"{m.family} · {m.modality} · {m.detail}", Qt.ToolTipRole)
            self.model_box.setItemData(i, m, Qt.UserRole + 1)
        self.model_box.blockSignals(False)

    def _add_model(self, info) -> int:
        i = self.model_box.findData(info.name)
        if i < 0:
            self.model_box.addItem(f"{Path(info.name).name} (folder)", info.name)
            i = self.model_box.count() - 1
            self.model_box.setItemData(i, f"{info.family} · {info.modality} · {info.detail}", Qt.ToolTipRole)
            self.model_box.setItemData(i, info, Qt.UserRole + 1)
        return i

    def add_model_folder(self, folder) -> bool:
        """Offer a local model folder (checked offline); an error is shown inline."""
        try:
            info = model_info(str(Path(folder).expanduser().resolve()))
        except AlignScopeError as exc:
            self.show_error(str(exc))
            return False
        self.model_box.setCurrentIndex(self._add_model(info))
        return True

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder")
        if folder:
            self.add_model_folder(folder)

    def _fill_runs(self) -> None:
        self.runs_list.clear()
        for ref in self.session.project.runs:
            item = QListWidgetItem(f"{ref.episode} · {ref.name}  ({ref.space}, TR {ref.tr_s:g} s)")
            item.setData(Qt.UserRole, ref.name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            shown = ref.name in self.session.run_names
            item.setCheckState(Qt.Checked if shown else Qt.Unchecked)
            self.runs_list.addItem(item)

    def _model_changed(self, _index: int = 0) -> None:
        name = self.model_box.currentData()
        info = self.model_box.currentData(Qt.UserRole + 1)
        if name is None:
            self.model_detail.setText("")
            return
        text = f"{info.family} · {info.modality}" if info is not None else ""
        if info is not None and not info.available:
            self.model_detail.setText(f"{text} — not usable offline: {info.detail}")
            return
        try:
            layers = model_layers(name)
            text += f" · {len(layers)} layers ({layers[0]} … {layers[-1]})"
        except AlignScopeError as exc:
            text += f" · layers unknown: {exc}"
        self.model_detail.setText(text)

    # ---- settings <-> spec -------------------------------------------------------------------
    def checked_runs(self) -> List[str]:
        return [self.runs_list.item(i).data(Qt.UserRole) for i in range(self.runs_list.count())
                if self.runs_list.item(i).checkState() == Qt.Checked]

    def build_spec(self) -> AnalysisSpec:
        """The :class:`AnalysisSpec` of the form (ConfigError / ValueError on a bad setting)."""
        model = self.model_box.currentData()
        if model is None:
            raise ValueError("model: expected one picked from the list or a local folder, found none")
        info = self.model_box.currentData(Qt.UserRole + 1)
        if info is not None and not info.available:
            raise ValueError(f"model {model}: its weights are not available offline ({info.detail})")
        runs = self.checked_runs()
        if not runs:
            raise ValueError("runs: expected at least one checked run, found none")
        refs = {r.name: r for r in self.session.project.runs}
        spaces = sorted({refs[r].space for r in runs})
        if len(spaces) > 1:
            raise ValueError(f"runs: expected runs of one space (one result per space), found {spaces}")
        delays = parse_numbers(self.delays_edit.text(), "delays (TRs)", int)
        lo, hi, n = self.alpha_lo.value(), self.alpha_hi.value(), self.alpha_n.value()
        if hi < lo:
            raise ValueError(f"alpha grid: expected first <= last exponent, found 1e{lo} to 1e{hi}")
        cv = self.cv_box.currentData()
        fit = FitOptions(delays_s=(self.delay_first.value(), self.delay_last.value()), delays=delays,
                         alphas=[float(a) for a in np.logspace(lo, hi, n)],
                         cv=int(self.cv_k.value()) if cv == "k" else cv,
                         detrend=self.detrend_box.currentData(),
                         high_pass_s=self.highpass_spin.value() or None,
                         confounds=self.confounds_box.currentData(), multi_space=self.multi_box.currentData())
        return AnalysisSpec(name=self.name_edit.text().strip(), model=model, layers=parse_layers(self.layers_edit.text()),
                            pooling=self.pooling_box.currentData(), window_s=self.window_spin.value() or None,
                            context_words=self.context_spin.value() or None, device=self.device_box.currentData(),
                            dtype=self.dtype_box.currentData(), ablate=self.ablate_box.currentData(),
                            runs=runs, episodes=sorted({refs[r].episode for r in runs}), space=spaces[0],
                            per_layer=bool(self.per_layer_box.currentData()), fit=fit)

    def apply_spec(self, spec: AnalysisSpec) -> None:
        """Show ``spec`` in the form (runs not in this project are ignored)."""
        i = self.model_box.findData(spec.model)
        if i < 0 and Path(str(spec.model)).is_dir():
            try:
                i = self._add_model(model_info(str(spec.model)))
            except AlignScopeError:
                i = -1
        if i >= 0:
            self.model_box.setCurrentIndex(i)
        self.layers_edit.setText(", ".join(str(x) for x in spec.layers) if spec.layers else "")
        _select(self.per_layer_box, bool(spec.per_layer))
        _select(self.pooling_box, spec.pooling)
        self.window_spin.setValue(float(spec.window_s or 0.0))
        self.context_spin.setValue(int(spec.context_words or 0))
        _select(self.device_box, spec.device)
        _select(self.dtype_box, spec.dtype)
        _select(self.ablate_box, spec.ablate)
        if spec.runs:
            wanted = set(spec.runs)
            for k in range(self.runs_list.count()):
                item = self.runs_list.item(k)
                item.setCheckState(Qt.Checked if item.data(Qt.UserRole) in wanted else Qt.Unchecked)
        fit = spec.fit
        self.delay_first.setValue(float(fit.delays_s[0]))
        self.delay_last.setValue(float(fit.delays_s[1]))
        self.delays_edit.setText(", ".join(str(d) for d in fit.delays) if fit.delays else "")
        alphas = np.asarray(fit.alphas, dtype=np.float64)
        self.alpha_lo.setValue(int(round(math.log10(alphas.min()))))
        self.alpha_hi.setValue(int(round(math.log10(alphas.max()))))
        self.alpha_n.setValue(int(alphas.size))
        if isinstance(fit.cv, int):
            _select(self.cv_box, "k")
            self.cv_k.setValue(int(fit.cv))
        else:
            _select(self.cv_box, fit.cv if fit.cv in {v for _, v in CVS} else "auto")
        self.cv_k.setEnabled(self.cv_box.currentData() == "k")
        _select(self.detrend_box, fit.detrend)
        self.highpass_spin.setValue(float(fit.high_pass_s or 0.0))
        _select(self.confounds_box, fit.confounds)
        _select(self.multi_box, fit.multi_space)
        self.name_edit.setText(spec.name or "")

    def restore(self) -> None:
        """The last settings used (or the defaults)."""
        spec = AnalysisSpec()
        raw = self.settings.value(SETTINGS_KEY)
        if raw:
            try:
                spec = AnalysisSpec.from_dict(json.loads(str(raw)))
            except (AlignScopeError, ValueError, TypeError):
                spec = AnalysisSpec()   # settings of another version: start from the defaults
        self.apply_spec(spec)

    def remember(self, spec: AnalysisSpec) -> None:
        self.settings.setValue(SETTINGS_KEY, json.dumps(spec.to_dict()))
        self.settings.sync()

    # ---- run ---------------------------------------------------------------------------------
    def show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))

    def _ask_overwrite(self, name: str) -> bool:
        answer = QMessageBox.question(self, "Replace result?",
                                      f"The project already has a result named “{name}”. Replace it?")
        return answer == QMessageBox.Yes

    def run_analysis(self) -> Optional[AnalysisSpec]:
        """Check the form, ask before replacing a result, remember the settings and ask the
        window to start the job. Returns the spec started (None when refused)."""
        try:
            spec = self.build_spec()
        except (AlignScopeError, ValueError) as exc:
            self.show_error(str(exc))
            return None
        prefix = f"{spec.result_name}-"   # per layer: one result "<name>-<layer>" each
        taken = [n for n in self.session.result_names
                 if (n.startswith(prefix) if spec.per_layer else n == spec.result_name)]
        if taken and not self.confirm_overwrite(taken[0]):
            self.show_error(f"not started: a result named “{taken[0]}” exists (pick another name)")
            return None
        self.show_error("")
        self.remember(spec)
        self.last_spec = spec
        self.start_requested.emit(spec)
        self.accept()
        return spec
