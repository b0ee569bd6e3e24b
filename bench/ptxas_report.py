"""Registers and spill bytes of every Triton autotune configuration, compiled for sm_90a with
Triton's bundled ptxas (no GPU needed; reads this source tree's kernels).

    python bench/ptxas_report.py [--out DIR] [--limit N]

One row per (kernel kind, configuration) in the one schema (bench "ptxas": metric
registers/thread, the spill-store bytes and wgmma count in the notes), appended to
DIR/rfmfast_bench.csv (default bench/results). The kernels' constexpr arguments are read from
their signatures; the ones this script does not set are given 0 (named in the notes).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("ptxas_report.py compiles the kernels: unset TRITON_INTERPRET")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from rfmfast.bench import schema  # noqa: E402


def kernels():
    """(label, jit function, constexpr values, pointer dtype, config) for every configuration."""
    from rfmfast.ops._triton import matrix as km
    from rfmfast.ops._triton import product as kmm
    from rfmfast.ops.agop import triton as ag

    out = []
    for mode, cfgs in kmm._CONFIGS.items():
        tc = mode.startswith("tc")
        wide = mode.endswith("wide")
        for cfg in cfgs:
            for prec, dt in (
                [(1, "fp32"), (2, "fp32")]
                if tc
                else [(0, "fp32"), (0, "fp64")]
                if mode.startswith("ieee")
                else [(0, "fp32")]
            ):
                const = dict(
                    INTERP=False,
                    DIRECT=mode == "direct",
                    KERNEL=0,
                    PREC=prec,
                    WEIGHT=wide,
                    VALUES_FROM_X=wide,
                    P_RESIDENT=tc,
                    BLOCK_K=64 if tc else 4 if mode == "direct" else 16,
                )
                if not wide:
                    const["BLOCK_T"] = 16
                out.append((f"kernel_matmul {mode} prec={prec}", kmm._fused_kmm, const, dt, cfg))
    for mode, cfgs in km._CONFIGS.items():
        for cfg in cfgs:
            for sym in (False, True):
                const = dict(
                    KERNEL=2 if mode == "direct" else 0,
                    DIRECT=mode == "direct",
                    SYMMETRIC=sym,
                    PREC=1 if mode == "tc" else 0,
                    INTERP=False,
                    WEIGHT=False,
                    BLOCK_K=4 if mode == "direct" else 32 if mode == "tc" else 16,
                )
                out.append(
                    (f"kernel_matrix {mode} symmetric={sym}", km._kernel_matrix, const, "fp32", cfg)
                )
    for cfg in ag._DIRECT_CONFIGS:
        for dt in ("fp32", "fp64"):
            out.append(
                (
                    "direct_grads laplace",
                    ag._direct_grads.fn,
                    dict(KERNEL=0, BLOCK_K=4, BLOCK_R=8),
                    dt,
                    cfg,
                )
            )
    return out


def resources(ptx, tools):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        for tool in tools:
            res = subprocess.run(
                [tool, "-arch=sm_90a", "-v", src, "-o", os.path.join(tmp, "k.cubin")],
                capture_output=True,
                text=True,
            )
            txt = res.stdout + res.stderr
            regs = re.search(r"Used (\d+) registers", txt)
            if regs:
                spill = re.search(r"(\d+) bytes spill stores", txt)
                return int(regs.group(1)), int(spill.group(1)) if spill else 0
    return None, None


def compile_one(fn, const, dt, cfg):
    const = dict(const, **cfg.kwargs)
    sig, defaulted = {}, []
    for p in fn.params:
        if p.is_constexpr:
            if p.name not in const:
                const[p.name] = 0
                defaulted.append(p.name)
            sig[p.name] = "constexpr"
        elif p.name.endswith("_ptr"):
            sig[p.name] = "*" + dt
        else:
            sig[p.name] = "i32"
    k = triton.compile(
        ASTSource(fn, sig, const),
        target=GPUTarget("cuda", 90, 32),
        options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages},
    )
    return k.asm["ptx"], defaulted


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N configurations")
    a = ap.parse_args(argv)
    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    tools = [
        os.path.join(bindir, f)
        for f in ("ptxas-blackwell", "ptxas")
        if os.path.exists(os.path.join(bindir, f))
    ]
    if not tools:
        sys.exit(f"no ptxas in {bindir}")
    base = {
        "run": schema.new_run_id(),
        "date": schema.now(),
        "size": "full",
        **schema.facts(torch.device("cpu")),
    }
    base["device"] = "none (compiled for sm_90a, no GPU)"
    rows = []
    for label, fn, const, dt, cfg in kernels()[: a.limit]:
        shape = f"{cfg.kwargs} warps={cfg.num_warps} stages={cfg.num_stages}"
        row = dict(
            base,
            bench="ptxas",
            case=label,
            impl=shape,
            role="rfmfast",
            precision=dt,
            metric="registers/thread",
            status="ok",
        )
        try:
            ptx, defaulted = compile_one(fn, const, dt, cfg)
            regs, spill = resources(ptx, tools)
            row.update(
                value=regs,
                notes=f"spill stores {spill} B; wgmma instructions "
                f"{ptx.count('wgmma.mma_async')}"
                + (f"; constexprs set to 0: {', '.join(defaulted)}" if defaulted else ""),
            )
        except Exception as e:  # noqa: BLE001 - one configuration that does not compile
            msg = " ".join(str(e).split())[:200]
            row.update(status="failed", notes=f"{type(e).__name__}: {msg}")
        print(f"{label:40s} {dt} {shape:60s} {row.get('value', '')} {row['notes']}", flush=True)
        rows.append(row)
    out = schema.write_rows(Path(a.out) / schema.CSV_NAME, rows)
    print(f"{len(rows)} rows appended to {out}")


if __name__ == "__main__":
    main()
