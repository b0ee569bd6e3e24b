"""pytest-benchmark settings for bench/: `pytest bench --benchmark-only` (needs `pip install .[bench]`)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
