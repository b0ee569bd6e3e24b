"""The benchmark registry: one record per benchmark (rfmfast.bench.runner.Benchmark), in the
order `rfmfast bench` runs them. To add one, write its cases in a module of this package and
list its Benchmark here; its name becomes an `--only` choice."""

from __future__ import annotations

from . import NAMES
from .accuracy import BENCHMARKS as _ACCURACY
from .contention import BENCHMARKS as _CONTENTION
from .large import BENCHMARKS as _LARGE
from .linrfm import BENCHMARKS as _LINRFM
from .ops import BENCHMARKS as _OPS
from .ratings import BENCHMARKS as _RATINGS
from .rfm import BENCHMARKS as _RFM
from .solve import BENCHMARKS as _SOLVE

BENCHMARKS = {
    b.name: b
    for b in (
        *_OPS,
        *_SOLVE,
        *_LARGE,
        *_RFM,
        *_LINRFM,
        *_RATINGS,
        *_ACCURACY,
        *_CONTENTION,
    )
}
assert tuple(BENCHMARKS) == NAMES, (tuple(BENCHMARKS), NAMES)
