"""Score prediction sets against the committed sweeps with pyphase's own compare code
(pyphase.report.compare_text --json, the function behind `pyphase compare`).

Run from the repo root: python3 results/predictions_v2/score.py
"""

from __future__ import annotations

import json
from pathlib import Path

from pyphase.report import compare_text

SETS = {"before-sweep": "results/predictions", "calibrated (v1)": "results/predictions_calibrated",
        "v2 (radial)": "results/predictions_v2", "v3 (growth law)": "results/predictions_v3"}
CAL = Path("results/calibration/h100_calibration_unconstrained.json")

for exp in ("phase2_5", "phase3a", "phase3b"):
    for label, root in SETS.items():
        out = json.loads(compare_text(exp, root=[Path("/nonexistent-runs"), Path("results")],
                                      prediction=Path(root) / exp, calibration=CAL, as_json=True))
        t = {x["name"]: x for x in out["targets"]}
        lr = t["lr_opt"]
        lr = {**lr, "value": lr["value"] if lr["reason"] is None else lr["reason"]}
        rest = "  ".join(f"{k}: {t[k]['value'] if t[k]['reason'] is None else t[k]['reason']} [{t[k]['passed']}]"
                         for k in ("beta", "rules"))
        print(f"{exp:9s} {label:16s} clip MAE {out['clip_frequency_mae']:.4f} ({len(out['clip_frequency'])} configs, "
              f"{out['unmatched_configs']} unmatched)  regime {out['regime_accuracy']:.0%}  "
              f"lr_opt: {lr['value']} [{lr['passed']}]  {rest}")
