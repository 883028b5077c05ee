"""Bar chart of median delivery events/s per driver, from benchmarks/results.json.

python benchmarks/plot.py [results.json] [throughput.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def plot(results: Path = HERE / "results.json", out: Path = HERE / "throughput.png") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(results.read_text())
    summary = data["summary"]
    names = sorted(summary, key=lambda k: summary[k]["median"])
    medians = [summary[k]["median"] for k in names]
    lows = [summary[k]["median"] - summary[k]["min"] for k in names]
    highs = [summary[k]["max"] - summary[k]["median"] for k in names]
    colors = ["tab:blue" if k.startswith("asynctracker") else "tab:gray" for k in names]

    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars = ax.barh(names, medians, xerr=[lows, highs], color=colors, capsize=3)
    for bar, value, high in zip(bars, medians, highs, strict=True):
        ax.text(
            bar.get_width() + high,
            bar.get_y() + bar.get_height() / 2,
            f" {value:,.0f}",
            va="center",
            fontsize=8,
        )
    ax.set_xlabel("events/s delivered end to end (median, whiskers = min/max)")
    ax.set_title(
        f"{data['events']:,} struct events to a local collector, {data['rounds']} rounds "
        f"(GET: {data['get_events']:,})",
        fontsize=10,
    )
    ax.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:3]]
    print(f"wrote {plot(*args)}")
