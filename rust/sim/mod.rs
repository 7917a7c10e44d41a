//! Noisy quadratic model simulator: `model` (spectrum, initial point, noise), `optim` (SGD, AdamW,
//! clipping, schedule — torch's arithmetic), `sweep` (configs × seeds in parallel, summaries).

pub mod model;
pub mod optim;
pub mod sweep;

pub use model::{GrowthLaw, InitStats, Nqm, Radial};
pub use optim::{reference_trajectory, AdamW, Optimizer, Schedule, Sgd};
pub use sweep::{
    curve_steps, run_sweep, run_sweep_until, simulate_trajectory, Precision, RunConfig, StepRecord, SweepSpec, TrajectoryResult,
};
