"""`python -m rfmfast.info` (or `rfmfast info`): version, backends here and why not the others,
torch/triton versions, CPU features, GPU if any."""

from __future__ import annotations

import os
import platform


def report() -> str:
    import torch

    from . import __version__
    from .backends import available_backends

    lines = [
        f"rfmfast {__version__}",
        f"python {platform.python_version()}, torch {torch.__version__}",
    ]
    try:
        import triton

        lines.append(f"triton {triton.__version__}")
    except ImportError:
        lines.append("triton: not installed")
    lines.append(
        f"machine: {platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch threads {torch.get_num_threads()}"
    )
    try:
        from . import _C

        lines.append(
            f"CPU features used by the C++ kernels: {_C.cpu_features()} -> {_C.isa()} path"
        )
    except ImportError:
        pass
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(
                f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, "
                f"compute capability {p.major}.{p.minor}"
            )
    else:
        lines.append("GPU: none visible to torch")
    lines.append("backends:")
    for name, (ok, why) in available_backends().items():
        lines.append(f"  {name:<10} {'yes' if ok else 'no ':<4} {why}")
    forced = os.environ.get("RFMFAST_BACKEND")
    if forced:
        lines.append(f"RFMFAST_BACKEND={forced} forces that backend everywhere")
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser(
        "info", help="print version, backends and machine", description=__doc__.split("\n\n")[0]
    )
    p.set_defaults(func=lambda args: print(report()))


if __name__ == "__main__":
    print(report())
