#!/usr/bin/env bash
# Build dist/AlignScope/ (a one-folder bundle) from the tested tree. See installer/README.md.
# ALIGNSCOPE_NO_TARBALL=1 skips the .tar.gz (the bundle test does: packing 2 GB takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
make setup
PY=.venv/bin/python
$PY -m pip install -q "pyinstaller>=6.0"
start=$(date +%s)
$PY -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller installer/alignscope.spec
version=$($PY -c "import engine; print(engine.__version__)")
platform=$($PY -c "import sys, platform; print(sys.platform + '-' + platform.machine())")
if [ "$(uname)" = "Linux" ]; then
  cat > dist/AlignScope/alignscope.desktop <<DESK
[Desktop Entry]
Type=Application
Name=AlignScope
Exec=AlignScope
Terminal=false
Categories=Science;Education;
DESK
fi
# smoke test: every sub-command's module is in the bundle (main.py imports them all for --help)
dist/AlignScope/AlignScope --help >/dev/null
echo "bundle: dist/AlignScope $(du -sh dist/AlignScope | cut -f1) built in $(( $(date +%s) - start )) s"
if [ "${ALIGNSCOPE_NO_TARBALL:-0}" != "1" ]; then
  tar -C dist -czf "dist/AlignScope-${version}-${platform}.tar.gz" AlignScope
  echo "built dist/AlignScope-${version}-${platform}.tar.gz"
fi
