"""phase3a's final validation losses with the default fp32 residual stream and gradient against the
opt-in bf16 gradient of the fp32 stream (PYPHASE_RESIDUAL=bf16grad), and, for reference, the opt-in
bf16 stream (PYPHASE_RESIDUAL=bf16); seeds 0-2, all measured on the H100. fp32: rerun39 (seed 0,
bcda818) and rerun37 (seeds 1-2, 8047a1e); bf16grad: rerun40 (6d881af); bf16 stream: rerun35 and
rerun37_bf16res. Run from the repository root:
python3 results/bench/bf16grad_vs_fp32_3seeds_analysis.py"""
import polars as pl
from scipy.stats import wilcoxon

P = "results/phase3a/"


def load(*names: str) -> pl.DataFrame:
    return pl.concat([pl.read_csv(P + n) for n in names], how="diagonal_relaxed")


k = ["batch_size", "lr", "seed"]
cols = k + ["final_val_loss", "converged", "avg_clip_frequency"]
f = load("rerun39_seed0_summary.csv", "rerun37_seeds12_summary.csv").select(cols)
g = load("rerun40_bf16grad_seed0_summary.csv", "rerun40_bf16grad_seeds12_summary.csv").select(cols)
b = load("rerun35_bf16res_seed0_summary.csv", "rerun37_bf16res_seeds12_summary.csv").select(cols)
j = f.join(g, on=k, suffix="_bf16grad").join(b, on=k, suffix="_bf16res").sort(k)
pl.Config.set_tbl_rows(40); pl.Config.set_tbl_cols(20); pl.Config.set_tbl_width_chars(220)
print(j.select(k + ["final_val_loss", "final_val_loss_bf16grad", "final_val_loss_bf16res", "converged",
                    "converged_bf16grad", "converged_bf16res", "avg_clip_frequency", "avg_clip_frequency_bf16grad"]))
print(j.group_by("batch_size", "lr").agg(
    *[e for s in ("", "_bf16grad", "_bf16res") for e in (
        pl.col("final_val_loss" + s).median().alias("median" + (s or "_fp32")),
        (pl.col("final_val_loss" + s).max() - pl.col("final_val_loss" + s).min()).alias("spread" + (s or "_fp32")),
        pl.col("converged" + s).sum().alias("conv" + (s or "_fp32")))]).sort("batch_size", "lr"))
for s in ("", "_bf16grad", "_bf16res"):
    print(f"diverged ({s[1:] or 'fp32'}): {(~j['converged' + s]).sum()} of {j.height}")
# paired by (B, LR, seed), where both runs converged
both = j.filter(pl.col("converged") & pl.col("converged_bf16grad"))
d = (both["final_val_loss_bf16grad"] - both["final_val_loss"]).to_numpy()
print(f"bf16grad - fp32, {len(d)} pairs where both converged: mean {d.mean():+.4f}, median {float(sorted(d)[len(d) // 2]):+.4f}, "
      f"|d| median {float(sorted(abs(d))[len(d) // 2]):.4f}, Wilcoxon signed-rank p = {wilcoxon(d).pvalue:.3f}")
seeds = j.group_by("batch_size", "lr").agg(
    (pl.col("final_val_loss").filter(pl.col("converged")).max() - pl.col("final_val_loss").filter(pl.col("converged")).min()).alias("r"))
print(f"for scale: fp32's own spread over seeds (max - min, converged runs), median over the 10 configs: {seeds['r'].median():.4f}")
for bs in (128, 256):
    for s in ("", "_bf16grad"):
        best = j.filter(pl.col("batch_size") == bs).sort("final_val_loss" + s).group_by("seed").first().sort("seed")
        print(f"B = {bs}, {s[1:] or 'fp32'}: best LR per seed (seed, LR, val loss):",
              [(sd, lr, round(v, 4)) for sd, lr, v in best.select("seed", "lr", "final_val_loss" + s).rows()])
