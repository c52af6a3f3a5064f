#!/usr/bin/env bash
# Create .venv/ at the repo root and install the whole LocalMIM stack into it.
#
#   bash tools/setup_env.sh            # idempotent; re-running only fills what is missing
#
# The one hard part is mmcv: PyPI has no binary mmcv 2.x wheel for current torch, so it is
# built from source with compiled ops (see shared notes in README "Installation details").
# The built wheel is cached OUTSIDE the repo, keyed by mmcv/torch/python/platform/cuda, so a
# second set-up (new clone, CI) takes a minute or two.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LOCALMIM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
CACHE="${LOCALMIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/localmim}"

TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
MMCV_VERSION="2.1.0"   # mmdet 3.3.0 and mmseg 1.2.2 require mmcv < 2.2.0

step_start=0
step() { step_start=$(date +%s); echo "[setup] $*"; }
done_step() { echo "[setup]   done in $(( $(date +%s) - step_start )) s"; }
total_start=$(date +%s)
# Run pip, hiding the harmless "Location 'file:///opt/...' is ignored" notes of some machines.
pip_quiet() { "$@" 2>&1 | grep -v "^WARNING: Location 'file:///" || true; return "${PIPESTATUS[0]}"; }

command -v "$PYTHON" >/dev/null || { echo "[setup] error: $PYTHON not found (Python 3.11 is required)"; exit 1; }

step "virtual environment at $VENV"
if [ ! -x "$VENV/bin/python" ]; then "$PYTHON" -m venv "$VENV"; fi
PY="$VENV/bin/python"
PIP=(pip_quiet "$PY" -m pip --disable-pip-version-check -q)
# setuptools >= 82 dropped pkg_resources (mmcv's setup.py and mmengine's config loader need it).
"${PIP[@]}" install "setuptools>=77.0.3,<82" wheel ninja
done_step

step "torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION"
if ! "$PY" -c "import torch, torchvision, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  "${PIP[@]}" install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi
done_step

step "timm, mmengine and the pure-Python dependencies"
"${PIP[@]}" install "timm==1.0.31" "mmengine==0.10.7" "numpy>=1.26" "simplejpeg>=1.9" opencv-python scipy shapely \
  ftfy regex "pycocotools>=2.0.7" safetensors matplotlib pytest "tensorboard==2.21.0" "ruff==0.17.5"
done_step

# openmim (`mim train localmim CONFIG`): its dependency opendatalab -> openxlab pins setuptools 60,
# requests 2.28, filelock and tqdm (which would break torch and the mmcv build), and is only used by
# `mim download --dataset`. Install openmim alone, with the dependencies its train/test commands use.
step "openmim 0.3.9 (without opendatalab)"
"${PIP[@]}" install click colorama model-index pandas rich tabulate requests
"${PIP[@]}" install --no-deps "openmim==0.3.9"
done_step

# ---- mmcv with compiled ops, cached outside the repo ----------------------------------------
KEY=$("$PY" - <<'PY'
import platform, sys, torch
cuda = ('cu' + torch.version.cuda.replace('.', '')) if (torch.version.cuda and torch.cuda.is_available()) else 'cpuops'
print(f"torch{torch.__version__.split('+')[0]}-py{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}-{cuda}")
PY
)
WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION-$KEY"
step "mmcv $MMCV_VERSION with ops (cache key $KEY)"
if "$PY" -c "import mmcv, mmcv.ops, sys; from mmcv.ops import nms; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  echo "[setup]   already installed"
else
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    BUILD=$(mktemp -d)
    echo "[setup]   no cached wheel: building from source in $BUILD (about 7 minutes on 2 cores)"
    "${PIP[@]}" download --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.6 headers need C++20; mmcv's setup.py pins -std=c++17 late on the compile line.
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    # Setting CFLAGS replaces Python's defaults entirely: give the full optimised set.
    (cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" CFLAGS="-DNDEBUG -O3 -g0 -fwrapv -Wall" \
      pip_quiet "$PY" -m pip --disable-pip-version-check -q wheel --no-build-isolation --no-deps -w "$BUILD/dist" .)
    mkdir -p "$WHEEL_DIR"
    cp "$BUILD"/dist/mmcv-*.whl "$WHEEL_DIR.tmp.whl"
    mv "$WHEEL_DIR.tmp.whl" "$WHEEL_DIR/$(basename "$BUILD"/dist/mmcv-*.whl)"
    rm -rf "$BUILD"
  else
    echo "[setup]   using cached wheel $(ls "$WHEEL_DIR"/mmcv-*.whl)"
  fi
  "${PIP[@]}" install --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
  "${PIP[@]}" install addict packaging pyyaml yapf
fi
done_step

step "mmdet, mmsegmentation and localmim (editable)"
"${PIP[@]}" install "mmdet==3.3.0" "mmsegmentation==1.2.2"
"${PIP[@]}" install --no-build-isolation --no-deps -e "$ROOT"
# mim looks for localmim/.mim (tools, configs) under site-packages, where an editable install puts
# no package folder: a link to the checkout's package lets `mim train localmim ...` work here too.
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn "$ROOT/localmim" "$SITE/localmim"
done_step

step "Fashion-MNIST (Debian package dataset-fashion-mnist)"
if [ -d /usr/share/datasets/fashion-mnist ]; then
  echo "[setup]   present at /usr/share/datasets/fashion-mnist"
elif command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
   && echo "[setup]   installed" || echo "[setup]   warning: could not install dataset-fashion-mnist (tests needing it will skip)"
else
  echo "[setup]   warning: not installed and apt-get unavailable; install 'dataset-fashion-mnist' or pass --data-root"
fi
done_step

step "check the stack imports together"
"$PY" - <<'PY'
import torch, torchvision, timm, mmengine, mmcv, mmdet, mmseg, pycocotools, simplejpeg
from mmcv.ops import nms, RoIAlign  # compiled ops
import localmim
print(f"[setup]   torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, "
      f"mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}")
PY
done_step
echo "[setup] complete in $(( $(date +%s) - total_start )) s. Activate with: source $VENV/bin/activate"
