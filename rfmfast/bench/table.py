"""The console table of a benchmark's rows."""

from __future__ import annotations


def _f(v, fmt):
    if v is None or v == "":
        return ""
    try:
        return format(float(v), fmt)
    except (TypeError, ValueError):
        return str(v)


def _cut(s: str, n: int) -> str:
    s = str(s or "")
    return s if len(s) <= n else s[: n - 1] + "…"


def format_rows(rows: list[dict], notes_width: int = 70) -> str:
    """Rows of one benchmark as an aligned text table, grouped by case, baselines first."""
    head = [
        "impl",
        "prec",
        "seconds",
        "rate",
        "unit",
        "speed-up",
        "rel. err",
        "metric",
        "status / notes",
    ]
    body = []
    for case in dict.fromkeys(r["case"] for r in rows):
        body.append(("case", case))
        for r in (r for r in rows if r["case"] == case):
            metric = ""
            if r.get("metric"):
                metric = f"{r['metric']} {_f(r.get('value'), '.5g')}"
            speed = _f(r.get("speedup_vs_baseline"), ".2f")
            st = "" if r.get("status") == "ok" else f"[{r.get('status')}] "
            body.append(
                (
                    "row",
                    [
                        _cut(r["impl"], 46),
                        r.get("precision") or "",
                        _f(r.get("seconds"), ".4g"),
                        _f(r.get("rate"), ".3g"),
                        _cut((r.get("rate_unit") or "").split(" (")[0], 16),
                        (speed + "x") if speed else "",
                        _f(r.get("rel_err"), ".1e"),
                        metric,
                        _cut(st + (r.get("notes") or ""), notes_width),
                    ],
                )
            )
    widths = [len(h) for h in head]
    for kind, cells in body:
        if kind == "row":
            widths = [max(w, len(c)) for w, c in zip(widths, cells)]
    right = {2, 3, 5, 6}

    def line(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    out = [line(head), "-" * min(sum(widths) + 2 * len(widths), 200)]
    for kind, cells in body:
        out.append(f"== {cells}" if kind == "case" else line(cells))
    return "\n".join(out)
