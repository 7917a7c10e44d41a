"""Session 46: phase2_5's seed 0 at 93eef47 (the bf16 residual stream and the weight-gradient kernel, both default)
against seed 0 at c9530b1 (the bf16 stream, cuBLAS's weight gradients), from committed files only. Run from the
repo root: python3 results/bench/beta_seeds2_checks_93eef47.py"""
import polars as pl
from scipy.stats import wilcoxon

new = pl.read_csv("results/recheck_h200_93eef47/phase2_5/summary.csv")
old = pl.read_csv("results/recheck_h200_c9530b1/phase2_5/summary.csv")
print(f"93eef47: {new.height} runs, seeds {sorted(new['seed'].unique().to_list())}, diverged {int((~new['converged']).sum())}")
j = new.filter(pl.col("seed") == 0).join(old.filter(pl.col("seed") == 0), on=["batch_size", "lr"], suffix="_c9530b1")
d = (j["final_val_loss"] - j["final_val_loss_c9530b1"]).to_numpy()
print(f"seed 0, {j.height} configs paired with c9530b1's: final val loss difference median {float(pl.Series(d).median()):+.4f} nats, "
      f"median |difference| {float(pl.Series(abs(d)).median()):.4f}, max |difference| {abs(d).max():.4f}, "
      f"Wilcoxon signed-rank p = {wilcoxon(d).pvalue:.2f}; converged differs in "
      f"{int((j['converged'] != j['converged_c9530b1']).sum())} configs")
s1 = new.filter(pl.col("seed") == 1).join(new.filter(pl.col("seed") == 0), on=["batch_size", "lr"], suffix="_s0")
d1 = (s1["final_val_loss"] - s1["final_val_loss_s0"]).abs()
print(f"seed 1 against seed 0 at 93eef47: median |difference| {d1.median():.4f}, max {d1.max():.4f} nats")
