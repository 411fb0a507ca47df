# Sourced by gpu_session.sh and gpu_jobs.sh on the (offline) GPU host: installs the wheels carried
# in .whl/ (from ../shared/tools/device-wheels.sh) and Blade itself (building the C++ runtime),
# logs to $OUT/install.log, and records the GPU and versions in $OUT/gpu.txt.
OUT=${OUT:-/tmp/blade-out}
mkdir -p "$OUT"
# sourced a second time in one shell (gpu_jobs.sh after a script that installed): nothing to redo
if [ -n "${BLADE_GPU_INSTALLED:-}" ]; then return 0; fi
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > "$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-build-isolation --no-deps -e . >> "$OUT/install.log" 2>&1 || { tail -30 "$OUT/install.log"; exit 1; }
# the C++ runtime (runtime/_native*.so: shape programs, arena plans, cubin launches through the driver);
# optional: without it Blade runs its Python paths, so a failed build is reported, not fatal
rm -rf /tmp/blade-build
{ cmake -S . -B /tmp/blade-build -G Ninja -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" \
    -DPython_EXECUTABLE="$(command -v python3)" \
    -DBLADE_CUDNN_INCLUDE="$(python3 -c 'import os, nvidia.cudnn as c; print(os.path.join(list(c.__path__)[0], "include"))' 2>/dev/null)" \
    && cmake --build /tmp/blade-build && ctest --test-dir /tmp/blade-build; } \
  >> "$OUT/install.log" 2>&1 || { tail -30 "$OUT/install.log"; echo "WARNING: the C++ runtime did not build (see install.log)"; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  git log -1 --format='commit %h %s' 2>/dev/null; date -u; } | tee "$OUT/gpu.txt"
export BLADE_GPU_INSTALLED=1
