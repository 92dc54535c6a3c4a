#!/usr/bin/env bash
# One-time (idempotent) set-up: system packages (when root) and the Python environment in .venv.
# Re-running is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium + fonts: the web UI's browser tests; orthanc (+ DICOMweb plugin): a real PACS for the integration
# tests; dicom3tools and pixelmed-apps: independent validators of the DICOM objects written
APT_PACKAGES=(python3 python3-venv python3-pip dcm2niix dcmtk poppler-utils chromium fonts-dejavu-core
  orthanc orthanc-dicomweb dicom3tools pixelmed-apps)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# Node.js and npm build the web UI (web/); Debian's packages only when no npm is installed already
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install these system packages: ${missing[*]} (tests that need them will fail)" >&2
  fi
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=.venv/.neuronav-setup
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "setup: NeuroNav needs Python 3.11 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf .venv  # missing or half-made (e.g. created before python3-venv was installed)
  "$PY" -m venv .venv
  rm -f "$stamp"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages into .venv (first run takes a few minutes)"
  # (pip's warnings about this machine's unused local package folders are filtered out)
  .venv/bin/python -m pip install -q --upgrade pip 2> >(grep -v '^WARNING: Location' >&2)
  if ! .venv/bin/python -m pip install -q -e ".[test,train]" 2> >(grep -v '^WARNING: Location' >&2); then
    echo "setup: pip install failed" >&2
    exit 1
  fi
  .venv/bin/python -c "import neuronav, pydicom, nibabel, onnxruntime, SimpleITK, torch"
  echo "$want" > "$stamp"
fi

# The web UI (web/: NiiVue + Vite) built into src/neuronav/service/webui/; rebuilt when its sources change
# or web/node_modules is missing (npm ci installs the devDependencies too: Vite, ESLint, Prettier, axe-core).
if command -v npm >/dev/null 2>&1; then
  web_want=$(cat web/package.json web/package-lock.json web/vite.config.js web/index.html $(find web/src -type f | sort) | sha256sum | cut -c1-16)
  web_stamp=src/neuronav/service/webui/.neuronav-build
  if [ ! -f "$web_stamp" ] || [ "$(cat "$web_stamp")" != "$web_want" ] || [ ! -d web/node_modules ]; then
    echo "setup: building the web UI (npm ci + vite build)"
    (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent) >/dev/null
    echo "$web_want" > "$web_stamp"
  fi
else
  echo "setup: npm not found: the web UI is not built (the API works; install Node.js and npm, then re-run)" >&2
fi
