"""Training logs as CSV files that survive a resume: rows are appended as training goes, and a resumed run
first drops the rows written after the checkpoint it resumes from (they will be written again)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def truncate_csv(path: Path, iteration: int) -> None:
    """Drop the rows of ``path`` whose ``iteration`` is after ``iteration``."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["iteration"]) <= iteration]
    if rows:
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.unlink()
