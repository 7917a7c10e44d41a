"""Session 45's checks of the bf16 residual stream (the default on CUDA from c9530b1), from committed files only.
Run from the repository root: python3 results/bench/bf16_stream_checks_c9530b1.py
1. phase3a, four seeds: the bf16 stream (run204, PYPHASE_RESIDUAL=bf16 at b68557b, one H200, packs of 20) against
   the bf16grad default of sessions 16-44 (run202, 87bc995, four H200s): paired final validation losses.
2. phase3a seed 0 at c9530b1 (run205, cold, packs of 5, the default) against run204's seed 0: bit for bit.
3. phase3b seed 0 at c9530b1 (run205) against the committed three seeds at 598a5e9 (bf16grad).
4. phase2_5 seed 0 + its low-LR extension at c9530b1 (run206) against seed 0 of run201 (bf16grad, 7d039b3)."""
import numpy as np
import polars as pl
from scipy.stats import wilcoxon

R = "results/"
print("1. phase3a, four seeds: bf16 stream (run204) vs bf16grad (run202), final val loss")
a = pl.read_csv(R + "phase3a/rerun_b68557b_h200_bf16_seeds0-3_summary.csv")
b = pl.read_csv(R + "recheck_h200x4_87bc995/phase3a/summary.csv")
print("   numerics:", a["numerics"].unique().to_list(), "vs", b["numerics"].unique().to_list())
j = a.join(b, on=["batch_size", "lr", "seed"], suffix="_ref").sort(["batch_size", "lr", "seed"])
for r in j.iter_rows(named=True):
    print(f"   B={r['batch_size']:3d} lr={r['lr']:<5} seed {r['seed']}: {r['final_val_loss']:9.4f} vs {r['final_val_loss_ref']:9.4f}"
          f"  converged {r['converged']!s:5} / {r['converged_ref']!s:5}  clip freq {r['avg_clip_frequency']:.3f} / {r['avg_clip_frequency_ref']:.3f}")
c = j.filter(pl.col("converged") & pl.col("converged_ref"))
d = (c["final_val_loss"] - c["final_val_loss_ref"]).to_numpy()
w = wilcoxon(d)
print(f"   {len(d)} pairs where both converged: difference median {np.median(d):+.4f}, mean {d.mean():+.4f}, "
      f"median |difference| {np.median(np.abs(d)):.4f}; Wilcoxon signed-rank statistic {w.statistic:.0f}, p = {w.pvalue:.2f}")
print(f"   diverged: {int((~a['converged']).sum())} (bf16 stream) and {int((~b['converged']).sum())} (bf16grad) of {a.height}")
sds = [t.filter(pl.col("converged")).group_by("batch_size", "lr").agg(pl.col("final_val_loss").std().alias("sd"))
       for t in (a, b)]
sd = sds[0].join(sds[1], on=["batch_size", "lr"], suffix="_ref").sort("batch_size", "lr")
ws = wilcoxon(np.log(sd["sd"].to_numpy()) - np.log(sd["sd_ref"].to_numpy()))
print(f"   seed-to-seed sd of the final val loss per config (converged runs): median {sd['sd'].median():.4f} (bf16 stream) "
      f"vs {sd['sd_ref'].median():.4f} (bf16grad); larger in {int((sd['sd'] > sd['sd_ref']).sum())} of {sd.height} configs; "
      f"Wilcoxon on the log ratios p = {ws.pvalue:.2f}")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after",
        "avg_clip_frequency", "converged", "diverged_step"]
print("2. phase3a seed 0 at c9530b1 (run205, packs of 5) vs run204's seed 0 (packs of 20), every compared column as text")
x = pl.read_csv(R + "phase3a/rerun98_bf16_seed0_summary.csv", infer_schema_length=0)
y = pl.read_csv(R + "phase3a/rerun_b68557b_h200_bf16_seeds0-3_summary.csv", infer_schema_length=0).filter(pl.col("seed") == "0")
k = x.join(y, on=["batch_size", "lr"], suffix="_o")
print("   rows", k.height, "bit for bit:", {c: bool((k[c].fill_null("") == k[c + "_o"].fill_null("")).all()) for c in cols})
print("3. phase3b seed 0 at c9530b1 (bf16 stream) vs the three bf16grad seeds at 598a5e9: final val loss")
p = pl.read_csv(R + "phase3b/rerun_c9530b1_h200_bf16_seed0_summary.csv")
q = pl.read_csv(R + "phase3b/rerun_598a5e9_h200x2_seeds0-2_summary.csv")
qs = q.group_by("batch_size", "gradient_clip").agg(pl.col("final_val_loss").min().alias("lo"), pl.col("final_val_loss").max().alias("hi"))
for r in p.join(qs, on=["batch_size", "gradient_clip"], nulls_equal=True).sort("batch_size", "gradient_clip").iter_rows(named=True):
    print(f"   B={r['batch_size']:3d} lr={r['lr']:<5} clip {r['gradient_clip']!s:5}: {r['final_val_loss']:.4f}  (bf16grad seeds 0-2: {r['lo']:.4f}-{r['hi']:.4f})"
          f"  clip freq {r['avg_clip_frequency']:.4f}")
print("4. phase2_5 seed 0 (+ LR 3e-5) at c9530b1 (bf16 stream) vs seed 0 of run201 (bf16grad), final val loss")
e = pl.read_csv(R + "recheck_h200_c9530b1/phase2_5/summary.csv")
f = pl.read_csv(R + "recheck_h200x4_7d039b3/phase2_5/summary.csv").filter(pl.col("seed") == 0)
g = e.join(f, on=["batch_size", "lr"], suffix="_ref").sort("batch_size", "lr")
for r in g.iter_rows(named=True):
    print(f"   B={r['batch_size']:3d} lr={r['lr']:<7}: {r['final_val_loss']:.4f} vs {r['final_val_loss_ref']:.4f}")
d = (g["final_val_loss"] - g["final_val_loss_ref"]).to_numpy()
print(f"   {len(d)} pairs: difference median {np.median(d):+.4f}, median |difference| {np.median(np.abs(d)):.4f}, max |difference| {np.abs(d).max():.4f}")
