"""Which NQM assumption breaks, measured on the committed sweeps and calibration (results/nqm_v2.md).

Run from the repo root: python3 results/predictions_v2/diagnostics.py
Reads only committed files: results/<exp>/steps.parquet, summary.csv and
results/calibration/h100_calibration_unconstrained.json. Prints the numbers nqm_v2.md quotes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

RUN_KEYS = [
    pl.col("run_id").str.extract(r"_b(\d+)_").cast(pl.Int64).alias("B"),
    pl.col("run_id").str.extract(r"_lr([0-9.e-]+)_").cast(pl.Float64).alias("LR"),
    pl.col("run_id").str.extract(r"_clip([0-9.a-z]+)_s").alias("clip"),
    pl.col("run_id").str.extract(r"_s(\d+)$").cast(pl.Int64).alias("seed"),
]
HALF_WINDOW = 250  # steps either side of an evaluation step over which |g| is summarised


def steps(exp: str) -> pl.DataFrame:
    return pl.read_parquet(f"results/{exp}/steps.parquet").with_columns(RUN_KEYS)


def grad_vs_weight(exp: str) -> pl.DataFrame:
    """Median |g| (before clipping) within ±HALF_WINDOW steps of every evaluation step, next to the
    weight norm logged at that step."""
    df = steps(exp)
    w = df.filter(pl.col("weight_norm").is_not_null() & (pl.col("step") > 0)).select(
        "B", "LR", "seed", "clip", pl.col("step").alias("at"), "weight_norm")
    g = (df.filter(pl.col("grad_norm_before").is_not_null() & pl.col("grad_norm_before").is_finite())
         .with_columns(((pl.col("step") + HALF_WINDOW - 1) // (2 * HALF_WINDOW) * (2 * HALF_WINDOW)).alias("at"))
         .group_by("B", "LR", "seed", "clip", "at")
         .agg(pl.col("grad_norm_before").median().alias("grad_norm"), pl.col("train_loss").mean().alias("loss")))
    return g.join(w, on=["B", "LR", "seed", "clip", "at"]).filter(pl.col("weight_norm").is_finite())


def slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def part_a() -> None:
    print("(a) slope of log|g| against log|w| across LRs at matched steps (per B, every seed's points together)")
    for exp in ("phase2_5", "phase3a"):
        j = grad_vs_weight(exp)
        for at in sorted(set(j["at"].to_list()) & {1000, 2000, 5000, 10000}):
            row = []
            for b in sorted(j["B"].unique().to_list()):
                s = j.filter((pl.col("at") == at) & (pl.col("B") == b)).sort("LR")
                if s.height >= 3:
                    row.append(f"B={b}: {slope(s['weight_norm'].to_numpy(), s['grad_norm'].to_numpy()):+.2f}")
            print(f"  {exp} step {at}: " + ", ".join(row))
        # pooled, with a per-(B, step, seed) intercept: demean logs within each (B, step, seed)
        p = j.filter(pl.col("at") >= 1000).with_columns(pl.col("weight_norm").log().alias("lx"),
                                                        pl.col("grad_norm").log().alias("ly"))
        p = p.with_columns((pl.col("lx") - pl.col("lx").mean().over("B", "at", "seed")).alias("dx"),
                           (pl.col("ly") - pl.col("ly").mean().over("B", "at", "seed")).alias("dy"))
        for seeds in [sorted(p["seed"].unique().to_list())] + [[x] for x in sorted(p["seed"].unique().to_list())]:
            q = p.filter(pl.col("seed").is_in(seeds))
            dx, dy = q["dx"].to_numpy(), q["dy"].to_numpy()
            print(f"  {exp} pooled, seeds {seeds} (steps >= 1000, within-(B, step, seed) slope, {q.height} points): "
                  f"{float(np.sum(dx * dy) / np.sum(dx * dx)):+.2f}")
    j = grad_vs_weight("phase2_5").filter(pl.col("at").is_in([2000, 10000])).sort("B", "LR", "at")
    print("  phase2_5 B=256: (LR, step, |w|, median |g|, train loss)")
    for r in j.filter(pl.col("B") == 256).iter_rows(named=True):
        print(f"    {r['LR']:g} {r['at']} {r['weight_norm']:.1f} {r['grad_norm']:.3f} {r['loss']:.3f}")
    # Growth of |w|^2 per step (steps 0..1000): spherical motion predicts lr^2 * const.
    df = steps("phase2_5").filter(pl.col("weight_norm").is_not_null() & pl.col("step").is_in([0, 1000]))
    per_run = (df.pivot(on="step", index=["B", "LR", "seed"], values="weight_norm")
               .with_columns(((pl.col("1000") ** 2 - pl.col("0") ** 2) / 1000).alias("dw2_per_step")))
    for seeds in [sorted(per_run["seed"].unique().to_list())] + [[x] for x in sorted(per_run["seed"].unique().to_list())]:
        gr = (per_run.filter(pl.col("seed").is_in(seeds))
              .group_by("LR").agg(pl.col("dw2_per_step").mean()).sort("LR"))
        lrs, dw = gr["LR"].to_numpy(), gr["dw2_per_step"].to_numpy()
        print(f"  phase2_5 d|w|^2/step over steps 0..1000 (mean over B, seeds {seeds}): "
              + ", ".join(f"LR {a:g}: {b:.3g}" for a, b in zip(lrs, dw))
              + f"; log-log slope in LR {slope(lrs, dw):.2f} (spherical motion at fixed update RMS: 2)")


def part_b() -> None:
    cal = json.loads(Path("results/calibration/h100_calibration_unconstrained.json").read_text())
    pts = cal["provenance"]["measurements"]["points"]
    print("(b) calibration points (lr 3e-3, B 32 run): step, loss, |G|^2, tr(Sigma), B_simple, lambda_1, tr(H)")
    for p in pts:
        n = p["noise"]
        print(f"  {p['step']}: {p['loss']:.3f} {n['grad_norm2']:.4g} {n['trace_sigma']:.4g} {n['b_simple']:.4g} "
              f"{p['eigenvalues'][0]:.4g} {p['hessian_trace']:.4g}")
    a, z = pts[0], pts[-1]
    print(f"  ratio step {z['step']} / step 0: |G|^2 {z['noise']['grad_norm2'] / a['noise']['grad_norm2']:.3g}, "
          f"tr(Sigma) {z['noise']['trace_sigma'] / a['noise']['trace_sigma']:.3g}, "
          f"B_simple {z['noise']['b_simple'] / a['noise']['b_simple']:.3g}, "
          f"lambda_1 {z['eigenvalues'][0] / a['eigenvalues'][0]:.3g}, tr(H) {z['hessian_trace'] / a['hessian_trace']:.3g}")


def part_c() -> None:
    print("(c) AdamW and clipping: spread of the clip factor s_t = min(1, c/|g_t|) over steps")
    for exp in ("phase2_5", "phase3b"):
        df = steps(exp).filter(pl.col("grad_norm_before").is_not_null() & pl.col("grad_norm_before").is_finite()
                               & (pl.col("clip") != "none"))
        df = df.with_columns(pl.col("clip").cast(pl.Float64).alias("c"))
        df = df.with_columns(pl.min_horizontal(pl.lit(1.0), pl.col("c") / pl.col("grad_norm_before")).alias("s"))
        t = (df.filter(pl.col("step") > 1000).group_by("B", "LR", "clip", "seed")
             .agg(pl.col("clipped").mean().alias("clip_freq"),
                  (pl.col("s").log().std()).alias("sd_log_s"),
                  (pl.col("grad_norm_before").log().std()).alias("sd_log_g"))
             .sort("B", "LR", "clip", "seed"))
        for r in t.iter_rows(named=True):
            print(f"  {exp} B={r['B']} LR={r['LR']:g} clip={r['clip']} s{r['seed']}: clip freq {r['clip_freq']:.3f}, "
                  f"sd(log s_t) {r['sd_log_s']:.3f}, sd(log |g_t|) {r['sd_log_g']:.3f}")
    s = pl.read_csv("results/phase3b/summary.csv").sort("batch_size", "gradient_clip", "seed")
    print("  phase3b final val loss by threshold (B, LR, clip, seed, clip freq, final val):")
    for r in s.iter_rows(named=True):
        print(f"    {r['batch_size']} {r['lr']:g} {r['gradient_clip']} s{r['seed']} "
              f"{r['avg_clip_frequency']:.3f} {r['final_val_loss']:.3f}")


PREDICTION_SETS = {"v1": "results/predictions_calibrated", "v2": "results/predictions_v2",
                   "v3": "results/predictions_v3"}


def part_d() -> None:
    """Measured against predicted mean |g| per LR and clip frequency at low LR (phase2_5)."""
    print("(d) phase2_5: mean |g| before clipping per LR (mean over B and seeds), clip frequency at LR 1e-4 and 3e-4")
    s = pl.read_csv("results/phase2_5/summary.csv")
    rows = {"measured": s.select("lr", pl.col("avg_grad_norm_before").alias("g"),
                                 pl.col("avg_clip_frequency").alias("f"))}
    for label, root in PREDICTION_SETS.items():
        path = Path(root) / "phase2_5" / "trajectories.parquet"
        if path.exists():
            t = pl.read_parquet(path)
            rows[label] = t.select("lr", pl.col("grad_norm_before").alias("g"), pl.col("clip_frequency").alias("f"))
    for label, t in rows.items():
        g = t.group_by("lr").agg(pl.col("g").mean()).sort("lr")
        # LR 1e-4 and 3e-4 only: every set has them (LR 3e-5 joined the sweep and some sets later)
        low = t.filter((pl.col("lr") >= 1e-4) & (pl.col("lr") <= 3e-4))["f"].mean()
        print(f"  {label:8s} |g|: " + ", ".join(f"{a:g}: {b:.3g}" for a, b in g.iter_rows())
              + f"; clip freq at LR 1e-4..3e-4: {low:.3f}")


if __name__ == "__main__":
    part_a()
    part_b()
    part_c()
    part_d()
