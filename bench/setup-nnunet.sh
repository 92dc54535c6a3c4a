#!/usr/bin/env bash
# Create bench/.venv-nnunet: the separate virtualenv that runs the nnU-Net v2 peer of
# bench/analysis_vs_nnunet.py. Idempotent: does nothing when the venv already imports nnunetv2 on
# the pinned CPU torch.
#
# torch is installed FIRST with an exact pin (torch==2.13.0, a CPU wheel this machine keeps on
# disk); nnunetv2 then sees its torch requirement satisfied. Installing nnunetv2 alone would let pip
# resolve a looser torch requirement to a multi-GB CUDA build.
#
# Usage (from the repository root):  bash bench/setup-nnunet.sh
set -euo pipefail

TORCH_VERSION="2.13.0"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-nnunet"
py="$venv/bin/python"

check() {
    "$py" - "$TORCH_VERSION" <<'EOF' 2>/dev/null
import sys
import torch
import nnunetv2  # noqa: F401
import dynamic_network_architectures  # noqa: F401
import nibabel  # noqa: F401
want = sys.argv[1]
ok = torch.__version__.split("+")[0] == want and torch.__version__.endswith("+cpu")
print(f"torch {torch.__version__}")
sys.exit(0 if ok else 1)
EOF
}

if [[ -x "$py" ]] && check >/dev/null; then
    echo "bench/.venv-nnunet is ready ($(check))"
    exit 0
fi

if [[ ! -x "$py" ]]; then
    echo "creating $venv"
    python3.11 -m venv "$venv"
fi
"$py" -m pip install --quiet --upgrade pip
echo "installing torch==$TORCH_VERSION (CPU) first"
"$py" -m pip install --quiet "torch==$TORCH_VERSION"
echo "installing nnunetv2"
# The constraint keeps pip from swapping torch while it resolves nnunetv2's dependencies.
constraint="$(mktemp)"
trap 'rm -f "$constraint"' EXIT
echo "torch==$TORCH_VERSION" >"$constraint"
"$py" -m pip install --quiet -c "$constraint" nnunetv2 nibabel

if ! version="$(check)"; then
    echo "bench/.venv-nnunet is broken: expected torch ${TORCH_VERSION}+cpu and nnunetv2" >&2
    "$py" -c "import torch; print('torch', torch.__version__)" >&2 || true
    exit 1
fi
echo "bench/.venv-nnunet is ready ($version)"
