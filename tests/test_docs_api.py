"""docs/api.md is what docs/make_api.py writes from the current docstrings (regenerate it with
`python docs/make_api.py` after changing a public signature or docstring)."""

import runpy
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_api_md_is_up_to_date():
    make_api = runpy.run_path(str(DOCS / "make_api.py"))
    expected = make_api["render"]()
    current = (DOCS / "api.md").read_text()
    assert current == expected, "docs/api.md is out of date: run `python docs/make_api.py`"


def test_api_md_covers_the_public_names():
    import rfmfast

    text = (DOCS / "api.md").read_text()
    for name in rfmfast.__all__:
        if name != "__version__":
            assert f"rfmfast.{name}" in text, name
    for name in ("RFMFeatures", "plot_M", "plot_history", "feature_importances_"):
        assert name in text, name
