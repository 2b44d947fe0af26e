# AlignScope: `make run` opens the app on the demo project, `make test` runs the whole suite offscreen.
# Both create .venv when missing and install only what changed since the last run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.alignscope-installed
SYSSTAMP := $(VENV)/.alignscope-system
# The Debian packages Qt (xcb, offscreen, Multimedia sound via libpulse) and VTK (EGL/GL) need; installed only when we are root.
APT_PACKAGES := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
	libxcb-randr0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxkbcommon0 \
	libxcb-cursor0 libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri libfontconfig1 libdbus-1-3 \
	libxrender1 libxext6 libsm6 libice6 libxi6 libxtst6 x11-utils \
	libpulse0
TORCH_VERSION ?= 2.13.0

.PHONY: run test setup system bench demo clean lint-imports bundle-test

run: setup
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$(uname)" = "Darwin" ]; then \
		$(PY) main.py gui --demo; \
	elif command -v xvfb-run >/dev/null; then \
		echo "no display here: showing the app on a virtual screen and saving it to alignscope-demo.png"; \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) main.py gui --demo --screenshot alignscope-demo.png; \
	else \
		echo "no display (DISPLAY/WAYLAND_DISPLAY unset) and no xvfb-run: run 'make run' on a desktop"; exit 1; \
	fi

test: setup lint-imports
	QT_QPA_PLATFORM=offscreen PYTHONUNBUFFERED=1 $(PY) -m pytest

# The import contracts of pyproject.toml (engine is pure Python; its layers).
lint-imports: setup
	$(VENV)/bin/lint-imports

# Builds the one-folder bundle (installer/build.sh, ~30 min, ~2 GB in dist/) and runs selftest from it.
bundle-test: setup
	ALIGNSCOPE_BUNDLE_TEST=1 QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -s tests/test_bundle.py

bench: setup
	for b in bench/*.py; do $(PY) $$b || exit 1; done

demo: setup
	$(PY) main.py demo --out demo_out

setup: system $(STAMP)

# Debian packages: only as root, only once per venv, and only those missing.
system: $(SYSSTAMP)
$(SYSSTAMP):
	@mkdir -p $(VENV)
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
			|| echo "warning: could not install$$missing (Xvfb tests will skip)"; fi; \
	else echo "not root: skipping Debian packages (Xvfb tests skip where no X server can start)"; fi
	@touch $@

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first (the CPU wheel on disk here, unless a CUDA torch is already in the venv), then the project.
$(STAMP): $(PY) pyproject.toml
	@if ! $(PY) -W ignore -c "import torch" 2>/dev/null; then \
		$(PY) -m pip install -q "torch==$(TORCH_VERSION)" 2>&1 | grep -v "is ignored: it is neither" || true; fi
	@$(PY) -W ignore -c "import torch" || { echo "torch failed to install"; exit 1; }
	$(PY) -m pip install -q -e ".[test]" 2>&1 | grep -v "is ignored: it is neither" || true
	@$(PY) -c "import PySide6, pyvista, transformers, nilearn, himalaya, av, cv2, h5py" || { echo "install incomplete"; exit 1; }
	@touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
