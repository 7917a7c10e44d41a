"""Column names and file layout shared by the trainer, the simulator and the analysis: one source
of truth, so a result written by one module is read by the others without guessing.

Run directory layout written by `pyphase.sweep` (one folder per config x seed)::

    <runs>/<experiment>/<run_id>/steps.parquet     STEP_COLUMNS, one row per step (+ step 0: eval only)
    <runs>/<experiment>/<run_id>/config.json       the RunConfig that produced the run
    <runs>/<experiment>/<run_id>/summary.parquet   one row, SUMMARY_COLUMNS (+ pack_size), written last
    <runs>/<experiment>/_packs/<pack_id>.ckpt      only while a pack of runs is unfinished

A run is finished exactly when its summary.parquet exists (written atomically, last).
Committed measurements live under `results/<experiment>/` as summary.csv, steps.parquet and
provenance.json (device, torch version, git commit, command, corpus checksum).
"""

import polars as pl

# The seed experiment log's columns, in its order (seed 000, "Full Results Table").
SEED_SUMMARY_COLUMNS: list[str] = [
    "batch_size",
    "lr",
    "gradient_clip",  # float, null = clipping off
    "final_train_loss",
    "final_val_loss",
    "train_loss_std",
    "avg_grad_norm_before",
    "avg_grad_norm_after",
    "avg_clip_frequency",
    "converged",
    "num_steps",
]

# What pyphase adds to every summary row.
EXTRA_SUMMARY_COLUMNS: list[str] = [
    "experiment",
    "run_id",
    "seed",
    "optimizer",  # "adamw" | "sgd"
    "n_params",
    # null when the run stayed finite; else the number of steps completed with a finite loss and
    # gradient norm: steps.parquet's step diverged_step + 1 (steps count from 1) is the first that was not
    "diverged_step",
    # of the run's pack (`pack_size` models trained as one): its training wall time and the tokens
    # per second of all its models together, the same in every row of the pack
    "wall_time_s",
    "tokens_per_s",
    "device",
    "torch_version",
    "git_commit",
    "corpus",
    "corpus_sha256",
    # the corpus's milestones, so every result can be read against them (nats/char; characters)
    "corpus_unigram_entropy",
    "corpus_bigram_entropy",
    "corpus_vocab_size",
]

SUMMARY_COLUMNS: list[str] = SEED_SUMMARY_COLUMNS + EXTRA_SUMMARY_COLUMNS

# Column types of a summary row (writer and readers alike, so a CSV and a Parquet of the same run
# give the same frame). `pack_size` is how many configs trained together as one packed model.
SUMMARY_DTYPES: dict[str, pl.DataType] = {
    "batch_size": pl.Int64(),
    "lr": pl.Float64(),
    "gradient_clip": pl.Float64(),
    "final_train_loss": pl.Float64(),
    "final_val_loss": pl.Float64(),
    "train_loss_std": pl.Float64(),
    "avg_grad_norm_before": pl.Float64(),
    "avg_grad_norm_after": pl.Float64(),
    "avg_clip_frequency": pl.Float64(),
    "converged": pl.Boolean(),
    "num_steps": pl.Int64(),
    "experiment": pl.String(),
    "run_id": pl.String(),
    "seed": pl.Int64(),
    "optimizer": pl.String(),
    "n_params": pl.Int64(),
    "diverged_step": pl.Int64(),
    "wall_time_s": pl.Float64(),
    "tokens_per_s": pl.Float64(),
    "device": pl.String(),
    "torch_version": pl.String(),
    "git_commit": pl.String(),
    "corpus": pl.String(),
    "corpus_sha256": pl.String(),
    "corpus_unigram_entropy": pl.Float64(),
    "corpus_bigram_entropy": pl.Float64(),
    "corpus_vocab_size": pl.Int64(),
    "pack_size": pl.Int64(),
    # packs trained side by side on one GPU, in one CUDA graph; wall_time_s is then their shared time
    "packs_together": pl.Int64(),
    "setup_time_s": pl.Float64(),  # pack creation to first step: compile, capture, first evaluation
    # "bf16 autocast" or "fp32", then any PYPHASE_* switch set that changes the numbers (train.NUMERIC_SWITCHES)
    "numerics": pl.String(),
}

# Per-step telemetry (train rows every step or every log interval; val_loss only on eval steps).
STEP_COLUMNS: list[str] = [
    "run_id",
    "step",
    "lr",
    "train_loss",
    "grad_norm_before",
    "grad_norm_after",
    "clipped",  # bool
    "val_loss",  # null except on evaluation steps
    "weight_norm",  # global L2 norm of the parameters; null except on evaluation steps
]

# One row per simulated (clip, optimizer, batch, lr, seed) trajectory: `pyphase predict` output.
PREDICTION_COLUMNS: list[str] = [
    "clip",  # float, null = clipping off
    "optimizer",
    "batch_size",
    "lr",
    "seed",
    "final_loss",
    "clip_frequency",
    "grad_norm_before",
    "grad_norm_after",
    "clip_scale",
    "effective_lr",
    "diverged",
    "diverged_step",
]

# Regime names and the clip-frequency thresholds that separate them (seed 000's thresholds).
REGIME_TRANSITION_AT = 0.5
REGIME_SATURATION_AT = 0.99
REGIMES = ("pre-saturation", "transition", "saturation")


def regime_of(clip_frequency: float) -> str:
    """Regime of a config from its clip frequency: < 0.5 pre-saturation, < 0.99 transition, else saturation."""
    if clip_frequency < REGIME_TRANSITION_AT:
        return REGIMES[0]
    if clip_frequency < REGIME_SATURATION_AT:
        return REGIMES[1]
    return REGIMES[2]
