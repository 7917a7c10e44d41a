"""Redraw the committed predictions' regime maps from their committed tables, with the current
drawing code (`pyphase.predict.plot_regime_map`), without simulating anything again.

The tables (trajectories.parquet) and summaries (prediction.json) stay as committed: only the PNGs
are redrawn. The boundaries and LR_opt markers drawn are the ones recorded in each prediction.json
when it was made. Run from the repository root:

    python3 results/predictions/rerender_maps.py
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from pyphase.nqm import NQMParams
from pyphase.predict import CURVES_FILE, TRAJECTORIES_FILE, Prediction, plot_regime_map, regime_map_name

ROOT = Path("results")


def main() -> None:
    for summary_path in sorted(ROOT.glob("predictions*/*/prediction.json")):
        folder = summary_path.parent
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        pred = Prediction(
            table=pl.read_parquet(folder / TRAJECTORIES_FILE),
            curves=pl.read_parquet(folder / CURVES_FILE),
            summary=summary,
            params=NQMParams.from_dict(summary["nqm"], where=str(summary_path)),
        )
        for group in summary["groups"]:
            name = regime_map_name(group["clip"])
            if summary.get("files") and name not in summary["files"].values():
                raise SystemExit(f"{folder}: {name} is not among the files its prediction.json lists")
            print(plot_regime_map(pred, group, folder / name))


if __name__ == "__main__":
    main()
