"""Tables and plots of metrics: Markdown, CSV and PNG, written next to the metrics they show."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from core.io import atomic_write_text


def _fmt(value) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def write_table(rows: list[dict], columns: list[str], path_stem: Path, title: str = "") -> str:
    """Write <stem>.md and <stem>.csv with the given columns; returns the Markdown text."""
    md = ([f"## {title}", ""] if title else []) + [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ] + ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    text = "\n".join(md) + "\n"
    atomic_write_text(path_stem.with_suffix(".md"), text)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: r.get(c, "") for c in columns})
    atomic_write_text(path_stem.with_suffix(".csv"), buf.getvalue())
    return text


def plot_lines(x: list, series: dict[str, list], path: Path, *, xlabel: str, ylabel: str, title: str,
               hlines: dict[str, float] | None = None, errors: dict[str, list] | None = None) -> Path:
    """A line plot (one line per series; None values skipped) saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, ys in series.items():
        pts = [(a, b) for a, b in zip(x, ys) if b is not None]
        if not pts:
            continue
        xs, vals = zip(*pts)
        err = None
        if errors and name in errors:
            err = [e for e, b in zip(errors[name], ys) if b is not None]
        ax.errorbar(xs, vals, yerr=err, marker="o", label=name, capsize=3)
    for name, y in (hlines or {}).items():
        if y is not None:
            ax.axhline(y, linestyle="--", color="gray", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xticks(list(x))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
