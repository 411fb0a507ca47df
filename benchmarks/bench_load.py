"""A saved artifact loaded in a fresh process (issue 9: ``blade.load`` serves the UNet at 3 shapes,
matching the saved module's outputs, with no Triton compile and no xDSL import, in at most 2 s
plus the weights' own load).

The parent compiles the SD 1.5 UNet (GPU: fp16, public config, random weights; ``--reduced``: the
zoo's reduced UNet in fp32, for a CPU), calls it at 3 shapes, saves the artifact (with sm_90
cubins on a GPU), the weights and the calls. A fresh child process then times, separately:
importing ``blade.artifact``, building the model skeleton and loading its weights (the weights'
own load, not counted against the bound), ``blade.artifact.load`` and each shape's first call, and
checks the outputs against the saved module's and that neither xDSL nor Triton's compiler was
imported by Blade (with ``blade.artifact``, or during the load and the calls; the model's own
libraries may import triton: diffusers does). Prints one table; ``--out`` also gets ``bench_load.json``.

    python benchmarks/bench_load.py                # GPU
    TRITON_INTERPRET=1 python benchmarks/bench_load.py --reduced --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = [(2, 64, 64, 77), (1, 72, 56, 77), (3, 65, 89, 77)]  # batch, latent h, latent w, text length
REDUCED_SHAPES = [(2, 8, 8, 7), (1, 9, 6, 5), (3, 7, 11, 7)]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
t_torch = time.perf_counter() - t0
import blade.artifact as artifact
t_import = time.perf_counter() - t0 - t_torch
by_blade = set(sys.modules)  # what importing torch and blade.artifact brought in
from blade import models  # the model's libraries (diffusers imports triton, and so triton.compiler)
root, device, reduced = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
dtype = torch.float32 if reduced else torch.float16
t1 = time.perf_counter()
model = models._reduced_unet(torch.float32, "cpu", reduced=reduced).to(device, dtype)
model.load_state_dict(torch.load(f"{root}/weights.pt", weights_only=True))
if device == "cuda":
    torch.cuda.synchronize()
t_weights = time.perf_counter() - t1
t2 = time.perf_counter()
before_load = set(sys.modules)
loaded = artifact.load(f"{root}/artifact", model)
t_load = time.perf_counter() - t2
firsts, diffs = [], []
for inputs, expected in torch.load(f"{root}/calls.pt", weights_only=True):
    inputs = [x.to(device) for x in inputs]
    t3 = time.perf_counter()
    with torch.no_grad():
        out = loaded(*inputs)
    if device == "cuda":
        torch.cuda.synchronize()
    firsts.append(time.perf_counter() - t3)
    got = out[0] if isinstance(out, (tuple, list)) else getattr(out, "sample", out)
    diffs.append((got.float().cpu() - expected.float()).abs().max().item())
# modules Blade imported: with torch and blade.artifact, or during the load and the calls
mods = sorted(m for m in by_blade | (set(sys.modules) - before_load)
              if m == "xdsl" or m.startswith(("xdsl.", "triton.compiler", "blade.dialects", "blade.codegen",
                                             "blade.passes")))
print("RESULT " + json.dumps(dict(import_torch_s=t_torch, import_blade_s=t_import, weights_s=t_weights,
                                  load_s=t_load, first_calls_s=firsts, max_diffs=diffs, compiler_modules=mods)))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reduced", action="store_true", help="the zoo's reduced UNet in float32")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import blade
    from blade import models
    from blade.artifact import save

    dtype = torch.float32 if a.reduced else torch.float16
    shapes = REDUCED_SHAPES if a.reduced else SHAPES
    model = models._reduced_unet(dtype, a.device, reduced=a.reduced)
    calls = [models._unet_like_inputs("sd15_unet", s, a.reduced, dtype, a.device, seed=i)[0]
             for i, s in enumerate(shapes)]
    t0 = time.perf_counter()
    opt = blade.optimize(model, calls[0], config=blade.Config(executor="program"))
    compiled = time.perf_counter() - t0
    saved = []
    with torch.no_grad():
        for x in calls:
            out = opt(*x)
            saved.append(([t.cpu() for t in x], out.sample.cpu()))
    root = tempfile.mkdtemp(prefix="blade-load-")
    t1 = time.perf_counter()
    save(opt, f"{root}/artifact", target=("cuda", 90, 32) if a.device == "cuda" else None)
    saved_s = time.perf_counter() - t1
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, f"{root}/weights.pt")
    torch.save(saved, f"{root}/calls.pt")
    # the repo first, then whatever the parent had (the GPU host's wheels live on PYTHONPATH)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-c", CHILD, root, a.device, "1" if a.reduced else "0"],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        sys.exit(f"the loading process failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    r = json.loads(line[len("RESULT "):])
    r.update(compile_s=compiled, save_s=saved_s, variants=len(opt.variants), device=a.device,
             model="reduced UNet fp32" if a.reduced else "SD 1.5 UNet fp16", shapes=shapes,
             torch=torch.__version__, date=time.strftime("%Y-%m-%d"))
    print(f"{r['model']} on {a.device} (torch {torch.__version__}, {r['date']}): compile {compiled:.1f} s, "
          f"{r['variants']} variant(s), save {saved_s:.1f} s")
    print(f"fresh process: import torch {r['import_torch_s']:.2f} s, import blade.artifact {r['import_blade_s']:.2f} s, "
          f"model + weights {r['weights_s']:.2f} s, blade.artifact.load {r['load_s']:.2f} s")
    for s, t, d in zip(shapes, r["first_calls_s"], r["max_diffs"]):
        print(f"  first call at batch {s[0]}, latent {s[1]}x{s[2]}: {t:.3f} s, max diff vs the saved module {d:.2e}")
    print(f"  load + first calls: {r['load_s'] + sum(r['first_calls_s']):.2f} s (bound: 2 s plus the weights' load); "
          f"compiler modules imported: {r['compiler_modules'] or 'none'}")
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        Path(a.out, "bench_load.json").write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
