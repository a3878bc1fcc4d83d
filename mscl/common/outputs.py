"""What a reader looks at: tables (Markdown and CSV) and figures (PNG) under a profile's reports folder,
written atomically (:func:`mscl.common.paths.reports_dir`)."""
from __future__ import annotations

from pathlib import Path

from mscl.common.io import atomic_write_text
from mscl.common.paths import reports_dir


def save_table(df, name: str, profile: str, floatfmt: str = ".2f") -> Path:
    """Write ``tables/<name>.md`` and ``tables/<name>.csv``; returns the Markdown path."""
    folder = reports_dir(profile) / "tables"
    atomic_write_text(folder / f"{name}.csv", df.to_csv(index=False, float_format="%.4f"))
    return atomic_write_text(folder / f"{name}.md", df.to_markdown(index=False, floatfmt=floatfmt) + "\n")


def save_figure(fig, name: str, profile: str) -> Path:
    """Write ``figures/<name>.png`` (dpi 150, tight)."""
    folder = reports_dir(profile) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    tmp = folder / f".{name}.tmp.png"
    fig.savefig(tmp, dpi=150, bbox_inches="tight")
    tmp.replace(path)
    return path
