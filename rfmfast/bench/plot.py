"""One PNG chart per benchmark (matplotlib, the `bench` extra): seconds per implementation,
grouped by case, log scale (baselines first); for the accuracy benchmarks the relative error
per case, one marker series per implementation."""

from __future__ import annotations

from pathlib import Path

ROLE_COLOR = {
    "baseline": "#7f7f7f",
    "peer": "#bcbd22",
    "floor": "#c7c7c7",
    "reference": "#9467bd",
    "rfmfast": "#1f77b4",
}


def available() -> tuple[bool, str]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False, "matplotlib is not installed (pip install 'rfmfast[bench]'): no PNG charts"
    return True, ""


def _num(v):
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def chart(bench, rows: list[dict], path: Path, title_extra: str = "") -> Path | None:
    """Write the chart of one benchmark's rows to path; None when nothing was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if bench.chart == "rel_err":
        return _errors(bench, rows, path, plt, title_extra)
    rows = [r for r in rows if _num(r.get("seconds")) and r.get("status") in ("ok", "timeout")]
    if not rows:
        return None
    cases = list(dict.fromkeys(r["case"] for r in rows))
    labels, values, colors, heads, ordered = [], [], [], [], []
    y = 0.0
    for case in cases:
        heads.append((y, case))
        y += 1
        for r in (r for r in rows if r["case"] == case):
            lab = r["impl"] + (
                f" [{r['precision']}]"
                if r.get("precision") not in ("", None, "float32", "float64")
                else ""
            )
            if r.get("status") == "timeout":
                lab += " (not reached: lower bound)"
            labels.append((y, lab))
            values.append(_num(r["seconds"]))
            colors.append(ROLE_COLOR.get(r["role"], "#333333"))
            ordered.append(r)
            y += 1
        y += 0.5
    fig, ax = plt.subplots(figsize=(11, max(2.5, 0.26 * y + 1.2)))
    ys = [p for p, _ in labels]
    ax.barh(ys, values, color=colors, height=0.8)
    ax.set_yticks(ys, [lab for _, lab in labels], fontsize=7)
    for (p, _), v, r in zip(labels, values, ordered):
        s = _num(r.get("speedup_vs_baseline"))
        ax.text(
            v,
            p,
            f" {v:.3g} s" + (f"  {s:.3g}x" if s and r["role"] == "rfmfast" else ""),
            va="center",
            fontsize=7,
        )
    lo, hi = min(values), max(values)
    ax.set_xscale("log")
    ax.set_xlim(lo / 3, hi * 12)
    for p, case in heads:
        ax.text(lo / 3, p, f" {case}", va="center", fontsize=8, fontweight="bold")
    ax.set_ylim(y - 0.5, -1)
    ax.set_xlabel(
        "seconds (best of the timed runs; log scale); colour: "
        + ", ".join(f"{k}" for k in ROLE_COLOR),
        fontsize=8,
    )
    ax.set_title(f"{bench.title}{title_extra}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _errors(bench, rows, path, plt, title_extra):
    rows = [r for r in rows if _num(r.get("rel_err")) and r.get("status") == "ok"]
    if not rows:
        return None
    cases = list(dict.fromkeys(r["case"] for r in rows))
    series: dict[str, list] = {}
    for r in rows:
        lab = r["impl"] + (
            f" [{r['precision']}]" if r.get("precision") in ("ieee", "tf32", "bf16") else ""
        )
        series.setdefault(lab, []).append((cases.index(r["case"]), _num(r["rel_err"]), r["role"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(cases) + 2), 4.5))
    markers = "os^vD<>p*h"
    for k, (lab, pts) in enumerate(series.items()):
        ax.scatter(
            [p[0] for p in pts],
            [max(p[1], 1e-18) for p in pts],
            s=18,
            marker=markers[k % len(markers)],
            label=lab,
            alpha=0.8,
        )
    ax.set_yscale("log")
    ax.set_xticks(range(len(cases)), cases, rotation=90, fontsize=6)
    ax.set_ylabel("relative error vs float64 (log scale)")
    ax.legend(fontsize=7)
    ax.set_title(f"{bench.title}{title_extra}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
