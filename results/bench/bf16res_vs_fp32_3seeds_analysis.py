"""phase3a's final validation losses with the fp32 residual stream (the default) against the opt-in
bf16 stream (PYPHASE_RESIDUAL=bf16), seeds 0-2, all measured on the H100 with the same kernels
(bff3330's): seed 0 from rerun36 (fp32, b4849e9) and rerun35 (bf16 stream, 58a1928), seeds 1-2 from
rerun37 (8047a1e). Run from the repository root: python3 results/bench/bf16res_vs_fp32_3seeds_analysis.py"""
import polars as pl

P = "results/phase3a/"
f = pl.concat([pl.read_csv(P + "rerun36_seed0_summary.csv"), pl.read_csv(P + "rerun37_seeds12_summary.csv")], how="diagonal_relaxed")
b = pl.concat([pl.read_csv(P + "rerun35_bf16res_seed0_summary.csv"), pl.read_csv(P + "rerun37_bf16res_seeds12_summary.csv")],
              how="diagonal_relaxed")
cols = ["batch_size", "lr", "seed", "final_val_loss", "converged", "avg_clip_frequency"]
j = f.select(cols).join(b.select(cols), on=["batch_size", "lr", "seed"], suffix="_bf16").sort("batch_size", "lr", "seed")
pl.Config.set_tbl_rows(40); pl.Config.set_tbl_cols(20); pl.Config.set_tbl_width_chars(200)
print(j)
print(j.group_by("batch_size", "lr").agg(
    pl.col("final_val_loss").median().alias("fp32_median"), pl.col("final_val_loss").min().alias("fp32_min"),
    pl.col("final_val_loss").max().alias("fp32_max"), pl.col("converged").sum().alias("fp32_converged"),
    pl.col("final_val_loss_bf16").median().alias("bf16_median"), pl.col("final_val_loss_bf16").min().alias("bf16_min"),
    pl.col("final_val_loss_bf16").max().alias("bf16_max"), pl.col("converged_bf16").sum().alias("bf16_converged")).sort("batch_size", "lr"))
for bs in (128, 256):
    for col in ("final_val_loss", "final_val_loss_bf16"):
        best = j.filter(pl.col("batch_size") == bs).sort(col).group_by("seed").first().sort("seed")
        print(f"B = {bs}, {'bf16 stream' if col.endswith('bf16') else 'fp32 stream'}: best LR per seed (seed, LR, val loss):",
              [(s, lr, round(v, 4)) for s, lr, v in best.select("seed", "lr", col).rows()])
