#!/usr/bin/env bash
# Build dist/AlignScope/ (a folder bundle) from the tested tree. See installer/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
make setup
PY=.venv/bin/python
$PY -m pip install -q "pyinstaller>=6.0"
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
dist/AlignScope/AlignScope --help >/dev/null
tar -C dist -czf "dist/AlignScope-${version}-${platform}.tar.gz" AlignScope
echo "built dist/AlignScope-${version}-${platform}.tar.gz"
