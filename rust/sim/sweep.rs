//! Many (config × seed) NQM trajectories in parallel, and their per-trajectory summaries.
//!
//! Noise: trajectories that share a seed share their noise draws z (common random numbers across
//! batch sizes, LRs and clip values): g = Hθ + sqrt(σ²/B) · sqrt(h) ⊙ z_t with z_t from the stream
//! `derive(seed, [NOISE_STREAM])`. Differences between grid points are then not blurred by
//! independent noise, and one draw serves a whole group of configs, which makes the sampler cheap.
//! Every work unit (one seed × a chunk of configs) regenerates its seed's stream from the start, so
//! results depend on neither the chunking nor the number of threads.
//!
//! Per step and trajectory the kernel makes one fused pass over the d directions: it applies the
//! (clipped) gradient of step t and, in the same pass, accumulates ‖g_{t+1}‖² and L(θ_{t+1}) from
//! the freshly updated θ and the already drawn z_{t+1}, so the clip factor of the next step is known
//! before its pass starts. State is padded to a multiple of `LANES` with h = 0 directions, which
//! stay exactly at 0; sums use `LANES` fixed accumulators, so the summation order (and hence every
//! bit of the result) is the same with or without SIMD.
//!
//! AdamW with clipping also runs an unclipped "twin" in lockstep on the same noise, to measure the
//! effective LR as lr · RMS(update clipped) / RMS(update unclipped).
//!
//! Radial part ([`Radial`], off unless the model has one): the scale-invariant directions are laid
//! out first (padded to `LANES`), the others after them, and each trajectory carries ρ² = |w_si|² /
//! |w_si(0)|². Per step, in the scale-invariant block the real gradient is (hθ + μw)/ρ (times the
//! clip factor, which uses the real norm ‖g‖² = Σ_si (hθ + μw)²/ρ² + Σ_rest (hθ + μw)²), the
//! optimizer's real step Δw is computed as usual but without weight decay, θ moves by Δw/ρ, and
//!   ρ²_{t+1} = (1 − lr·wd)² ρ²_t + Σ_si Δw_i² · si_params / (d_si · |w_si(0)|²),
//! i.e. the real update (its per-coordinate mean square, taken from the simulated directions, times
//! the number of real scale-invariant parameters) is orthogonal to w and weight decay shrinks only
//! the norm. For SGD without momentum this is exact for scale-invariant weights; for AdamW (whose
//! step is not exactly orthogonal to w) and SGD with momentum it is the spherical-motion
//! approximation. The other block runs the plain kernels unchanged, so with no scale-invariant
//! direction every bit equals the plain model's.
//!
//! With a measured growth law ([`GrowthLaw`], format version 3) the growth term is replaced by the
//! law: ρ²_{t+1} = (1 − lr·wd)² ρ²_t + coef · lr^power / |w_si(0)|², lr being the step's learning
//! rate; everything else (gradient /ρ, step /ρ, clip on the real norm) is unchanged. Without a law
//! the version-2 update above runs, bit for bit.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::model::{Nqm, Radial};
use super::optim::{
    adamw_elem, check_clip, check_lr, clip_coef, sgd_elem, AdamWStep, Optimizer, Real, Schedule,
    SgdStep,
};
use crate::error::CoreResult;
use crate::invalid;
use crate::rng::{derive, Xoshiro256pp};

/// Tag mixed into a seed to get its noise stream.
const NOISE_STREAM: u64 = 0x4e51_4d5f_6e6f_6973; // "NQM_nois"
/// Independent accumulators per sum; also the padding unit of the state vectors.
pub const LANES: usize = 16;
/// A trajectory diverged when L(θ) − L_min exceeds this multiple of L(θ0) − L_min (or is not finite).
pub const DIVERGENCE_FACTOR: f64 = 100.0;
/// Most steps one sweep may ask for.
pub const MAX_STEPS: usize = 100_000_000;
/// Most points a loss curve may ask for (more than steps + 1 are deduplicated away anyway).
pub const MAX_CURVE_POINTS: usize = 1_000_000;
/// Most worker threads a sweep may ask for.
pub const MAX_THREADS: usize = 1024;

/// Arithmetic of the simulation state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    F64,
}

/// One simulated configuration (crossed with every seed of the sweep).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunConfig {
    pub batch_size: u64,
    pub lr: f64,
    pub clip: Option<f64>,
    pub optimizer: Optimizer,
}

#[derive(Clone, Debug)]
pub struct SweepSpec {
    pub model: Nqm,
    pub configs: Vec<RunConfig>,
    pub seeds: Vec<u64>,
    pub steps: usize,
    pub schedule: Schedule,
    /// Number of log-spaced steps at which the loss is recorded (see [`curve_steps`]).
    pub curve_points: usize,
    pub precision: Precision,
    /// Run the unclipped twin of clipped AdamW trajectories (needed for their effective LR).
    pub twin: bool,
    /// Worker threads; None uses rayon's global pool.
    pub threads: Option<usize>,
}

/// Summary of one trajectory. Means are over the steps actually taken (up to divergence).
#[derive(Clone, Debug, PartialEq)]
pub struct TrajectoryResult {
    pub config: usize,
    pub seed: u64,
    /// Mean of L(θ_t) over the last 10% of steps (t = steps − n/10 + 1 ..= steps); +inf if diverged.
    pub final_loss: f64,
    /// L(θ_t) at [`curve_steps`]; +inf after divergence.
    pub curve: Vec<f64>,
    /// Fraction of steps with ‖g‖ > clip.
    pub clip_frequency: f64,
    pub grad_norm_before: f64,
    pub grad_norm_after: f64,
    /// Mean of torch's clip factor min(1, c / (‖g‖ + 1e-6)).
    pub clip_scale: f64,
    /// SGD: lr · mean clip factor. AdamW: lr · RMS(update) / RMS(update of the unclipped twin)
    /// over the steps both ran (lr without clipping; NaN if the twin was switched off).
    pub effective_lr: f64,
    pub diverged: bool,
    pub diverged_step: Option<usize>,
    /// ρ = |w_si| / |w_si(0)| after the last step taken (1 without a radial part).
    pub rho_final: f64,
}

/// Per-step record of one trajectory, for inspection and tests (`simulate_trajectory`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepRecord {
    /// L(θ_t), t = 0..=steps (shorter if diverged).
    pub loss: Vec<f64>,
    pub grad_norm_before: Vec<f64>,
    pub grad_norm_after: Vec<f64>,
    /// θ at the end (unpadded, in the model's direction order), in f64.
    pub theta_final: Vec<f64>,
    /// ρ_t, t = 0..=steps (shorter if diverged); all 1 without a radial part.
    pub rho: Vec<f64>,
}

/// Steps at which loss curves are recorded: 0 and `n − 1` log-spaced steps in 1..=steps,
/// rounded and deduplicated (so possibly fewer than n).
pub fn curve_steps(steps: usize, n: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::with_capacity(n.min(steps.saturating_add(1)));
    if n == 0 {
        return out;
    }
    out.push(0);
    if n == 1 || steps == 0 {
        return out;
    }
    let top = (steps as f64).ln();
    for k in 0..n - 1 {
        let frac = if n == 2 { 1.0 } else { k as f64 / (n - 2) as f64 };
        let s = (top * frac).exp().round() as usize;
        let s = s.clamp(1, steps);
        if *out.last().unwrap() != s {
            out.push(s);
        }
    }
    out
}

impl SweepSpec {
    pub fn validate(&self) -> CoreResult<()> {
        self.model.validate()?;
        if self.steps == 0 || self.steps > MAX_STEPS {
            return Err(invalid!("steps must be in 1..={MAX_STEPS}, got {}", self.steps));
        }
        self.schedule.validate(self.steps)?;
        if let Some(t) = self.threads {
            if t == 0 || t > MAX_THREADS {
                return Err(invalid!("threads must be in 1..={MAX_THREADS} (or None for all cores), got {t}"));
            }
        }
        if self.curve_points > MAX_CURVE_POINTS {
            return Err(invalid!("curve_points must be in 0..={MAX_CURVE_POINTS}, got {}", self.curve_points));
        }
        for c in &self.configs {
            if c.batch_size == 0 {
                return Err(invalid!("batch_size must be >= 1, got 0"));
            }
            check_lr(c.lr)?;
            check_clip(c.clip)?;
            c.optimizer.validate()?;
        }
        Ok(())
    }
}

/// Run every (config, seed) pair; results are ordered config-major: index = config · n_seeds + seed_index.
pub fn run_sweep(spec: &SweepSpec) -> CoreResult<Vec<TrajectoryResult>> {
    Ok(run_sweep_until(spec, &AtomicBool::new(false))?.unwrap_or_default())
}

/// [`run_sweep`] that gives up once `stop` is set (checked before every step of every work unit,
/// so within one step's time): `Ok(None)` then, the partial work discarded. The bindings set it
/// when Python has a pending signal (Ctrl-C), since the sweep runs without the GIL.
pub fn run_sweep_until(spec: &SweepSpec, stop: &AtomicBool) -> CoreResult<Option<Vec<TrajectoryResult>>> {
    spec.validate()?;
    let n_seeds = spec.seeds.len();
    let n_cfg = spec.configs.len();
    if n_seeds == 0 || n_cfg == 0 {
        return Ok(Some(Vec::new()));
    }
    let work = || -> Vec<Vec<(usize, TrajectoryResult)>> {
        let chunk = chunk_size(n_cfg, n_seeds, rayon::current_num_threads());
        let units: Vec<(usize, usize)> = (0..n_seeds)
            .flat_map(|s| (0..n_cfg).step_by(chunk).map(move |c0| (s, c0)))
            .collect();
        units
            .par_iter()
            .map(|&(s, c0)| {
                let idx: Vec<usize> = (c0..(c0 + chunk).min(n_cfg)).collect();
                let res = run_group_dispatch(spec, s, &idx, false, stop).0;
                idx.iter().map(|&c| c * n_seeds + s).zip(res).collect()
            })
            .collect()
    };
    let parts = match spec.threads {
        Some(t) => rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| invalid!("cannot start {t} threads: {e}"))?
            .install(work),
        None => work(),
    };
    if stop.load(Ordering::Relaxed) {
        return Ok(None); // units cut short left their slots unfilled
    }
    let mut out: Vec<Option<TrajectoryResult>> = vec![None; n_cfg * n_seeds];
    for (i, r) in parts.into_iter().flatten() {
        out[i] = Some(r);
    }
    Ok(Some(out.into_iter().map(|r| r.expect("every unit fills its slots")).collect()))
}

/// One trajectory with a per-step record (small d: tests and inspection).
pub fn simulate_trajectory(
    model: &Nqm,
    config: RunConfig,
    seed: u64,
    steps: usize,
    schedule: Schedule,
    precision: Precision,
) -> CoreResult<(TrajectoryResult, StepRecord)> {
    let spec = SweepSpec {
        model: model.clone(),
        configs: vec![config],
        seeds: vec![seed],
        steps,
        schedule,
        curve_points: 0,
        precision,
        twin: true,
        threads: Some(1),
    };
    spec.validate()?;
    let (mut res, rec) = run_group_dispatch(&spec, 0, &[0], true, &AtomicBool::new(false));
    Ok((res.remove(0), rec.expect("recording was requested")))
}

/// Configs per work unit: as many as possible, since one noise draw serves the whole unit, while
/// still giving every thread at least two units. Results do not depend on it.
fn chunk_size(n_cfg: usize, n_seeds: usize, threads: usize) -> usize {
    let per_seed = (2 * threads).div_ceil(n_seeds).max(1);
    n_cfg.div_ceil(per_seed).max(1)
}

fn run_group_dispatch(
    spec: &SweepSpec,
    seed_index: usize,
    configs: &[usize],
    record: bool,
    stop: &AtomicBool,
) -> (Vec<TrajectoryResult>, Option<StepRecord>) {
    match spec.precision {
        Precision::F32 => simd::run::<f32>(spec, seed_index, configs, record, stop),
        Precision::F64 => simd::run::<f64>(spec, seed_index, configs, record, stop),
    }
}

/// Compile the group loop three times (AVX-512, AVX2, baseline x86-64) and pick at run time.
/// Rust never contracts a·b + c into an FMA, and sqrt/div are correctly rounded, so all three
/// produce identical bits; only the vector width differs.
mod simd {
    use super::*;

    pub fn run<F: Real>(
        spec: &SweepSpec,
        seed_index: usize,
        configs: &[usize],
        record: bool,
        stop: &AtomicBool,
    ) -> (Vec<TrajectoryResult>, Option<StepRecord>) {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
                // SAFETY: the CPU supports the features the function was compiled for.
                return unsafe { run_avx512::<F>(spec, seed_index, configs, record, stop) };
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: as above.
                return unsafe { run_avx2::<F>(spec, seed_index, configs, record, stop) };
            }
        }
        run_group::<F>(spec, seed_index, configs, record, stop)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn run_avx512<F: Real>(
        spec: &SweepSpec,
        seed_index: usize,
        configs: &[usize],
        record: bool,
        stop: &AtomicBool,
    ) -> (Vec<TrajectoryResult>, Option<StepRecord>) {
        run_group::<F>(spec, seed_index, configs, record, stop)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2<F: Real>(
        spec: &SweepSpec,
        seed_index: usize,
        configs: &[usize],
        record: bool,
        stop: &AtomicBool,
    ) -> (Vec<TrajectoryResult>, Option<StepRecord>) {
        run_group::<F>(spec, seed_index, configs, record, stop)
    }
}

/// State of one optimizer run: θ, and m, v (AdamW) or the momentum buffer in `m` (SGD).
struct Lane<F> {
    theta: Vec<F>,
    m: Vec<F>,
    v: Vec<F>,
    /// ‖g_t‖² and Σ h θ_t² for the current step t.
    grad2: f64,
    curv: f64,
    /// ρ_t² (radial part; stays 1 without one).
    rho2: f64,
    alive: bool,
}

/// A contiguous block of a lane's state (the scale-invariant or the other directions).
struct Part<'a, F> {
    theta: &'a mut [F],
    m: &'a mut [F],
    v: &'a mut [F],
}

impl<F> Lane<F> {
    fn all(&mut self) -> Part<'_, F> {
        Part { theta: &mut self.theta, m: &mut self.m, v: &mut self.v }
    }

    /// The blocks before and after `at`.
    fn split(&mut self, at: usize) -> (Part<'_, F>, Part<'_, F>) {
        let (t0, t1) = self.theta.split_at_mut(at);
        let (m0, m1) = self.m.split_at_mut(at);
        let (v0, v1) = self.v.split_at_mut(at);
        (Part { theta: t0, m: m0, v: v0 }, Part { theta: t1, m: m1, v: v1 })
    }
}

/// Sums returned by one fused pass.
struct PassSums {
    grad2_next: f64,
    curv_next: f64,
    update2: f64,
}

#[inline(always)]
fn reduce<F: Real>(acc: &[F; LANES]) -> f64 {
    acc.iter().map(|x| x.to_f64()).sum()
}

/// Fused AdamW pass: step t with gradient (hθ + μ w) · scale; with `NEXT` also the sums ‖g_{t+1}‖²
/// and Σ h θ_{t+1}² for the next step, with `UPD` the squared update norm. The flags are constants,
/// so each variant compiles without the accumulators it does not need.
#[inline(always)]
fn adamw_pass<F: Real, const NEXT: bool, const UPD: bool>(
    lane: Part<'_, F>,
    h: &[F],
    w: &[F],
    w_next: &[F],
    mu: F,
    scale: F,
    c: &AdamWStep<F>,
) -> PassSums {
    let mut acc_g = [F::ZERO; LANES];
    let mut acc_c = [F::ZERO; LANES];
    let mut acc_u = [F::ZERO; LANES];
    // Zipped exact chunks: the compiler sees disjoint, LANES-long blocks (no bounds or alias checks
    // inside) and vectorizes the inner loop.
    let blocks = lane
        .theta
        .chunks_exact_mut(LANES)
        .zip(lane.m.chunks_exact_mut(LANES))
        .zip(lane.v.chunks_exact_mut(LANES))
        .zip(h.chunks_exact(LANES).zip(w.chunks_exact(LANES)).zip(w_next.chunks_exact(LANES)));
    for (((theta, m), v), ((hb, wb), wn)) in blocks {
        for j in 0..LANES {
            let hi = hb[j];
            let old = theta[j];
            let g = (hi * old + mu * wb[j]) * scale;
            let new = adamw_elem(old, &mut m[j], &mut v[j], g, c);
            theta[j] = new;
            if UPD {
                let du = new - old;
                acc_u[j] = acc_u[j] + du * du;
            }
            if NEXT {
                let ht = hi * new;
                let gn = ht + mu * wn[j];
                acc_g[j] = acc_g[j] + gn * gn;
                acc_c[j] = acc_c[j] + ht * new;
            }
        }
    }
    PassSums { grad2_next: reduce(&acc_g), curv_next: reduce(&acc_c), update2: reduce(&acc_u) }
}

/// The clipped run and its unclipped twin in one pass: they share h and the noise, and two
/// independent sqrt/div chains per element keep the divider busy (it bounds this kernel).
/// Returns the main run's sums (next-step gradient and loss, update norm) and the twin's update norm.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn adamw_pair_pass<F: Real>(
    main: &mut Lane<F>,
    twin: &mut Lane<F>,
    h: &[F],
    w: &[F],
    w_next: &[F],
    mu: F,
    scale: F,
    c: &AdamWStep<F>,
) -> (PassSums, f64) {
    let mut acc_g = [F::ZERO; LANES];
    let mut acc_c = [F::ZERO; LANES];
    let mut acc_u = [F::ZERO; LANES];
    let mut acc_t = [F::ZERO; LANES];
    let mains = main.theta.chunks_exact_mut(LANES).zip(main.m.chunks_exact_mut(LANES)).zip(main.v.chunks_exact_mut(LANES));
    let twins = twin.theta.chunks_exact_mut(LANES).zip(twin.m.chunks_exact_mut(LANES)).zip(twin.v.chunks_exact_mut(LANES));
    let shared = h.chunks_exact(LANES).zip(w.chunks_exact(LANES)).zip(w_next.chunks_exact(LANES));
    for ((((theta, m), v), ((theta2, m2), v2)), ((hb, wb), wn)) in mains.zip(twins).zip(shared) {
        for j in 0..LANES {
            let hi = hb[j];
            let noise = mu * wb[j];
            let old = theta[j];
            let new = adamw_elem(old, &mut m[j], &mut v[j], (hi * old + noise) * scale, c);
            theta[j] = new;
            let old2 = theta2[j];
            let new2 = adamw_elem(old2, &mut m2[j], &mut v2[j], hi * old2 + noise, c);
            theta2[j] = new2;
            let (du, du2) = (new - old, new2 - old2);
            acc_u[j] = acc_u[j] + du * du;
            acc_t[j] = acc_t[j] + du2 * du2;
            let ht = hi * new;
            let gn = ht + mu * wn[j];
            acc_g[j] = acc_g[j] + gn * gn;
            acc_c[j] = acc_c[j] + ht * new;
        }
    }
    (PassSums { grad2_next: reduce(&acc_g), curv_next: reduce(&acc_c), update2: reduce(&acc_u) }, reduce(&acc_t))
}

/// Fused SGD pass (momentum buffer in `lane.m`).
#[inline(always)]
fn sgd_pass<F: Real>(lane: Part<'_, F>, h: &[F], w: &[F], w_next: &[F], mu: F, scale: F, c: &SgdStep<F>) -> PassSums {
    let mut acc_g = [F::ZERO; LANES];
    let mut acc_c = [F::ZERO; LANES];
    let blocks = lane
        .theta
        .chunks_exact_mut(LANES)
        .zip(lane.m.chunks_exact_mut(LANES))
        .zip(h.chunks_exact(LANES).zip(w.chunks_exact(LANES)).zip(w_next.chunks_exact(LANES)));
    for ((theta, buf), ((hb, wb), wn)) in blocks {
        for j in 0..LANES {
            let hi = hb[j];
            let old = theta[j];
            let g = (hi * old + mu * wb[j]) * scale;
            let new = sgd_elem(old, &mut buf[j], g, c);
            theta[j] = new;
            let ht = hi * new;
            let gn = ht + mu * wn[j];
            acc_g[j] = acc_g[j] + gn * gn;
            acc_c[j] = acc_c[j] + ht * new;
        }
    }
    PassSums { grad2_next: reduce(&acc_g), curv_next: reduce(&acc_c), update2: f64::NAN }
}

/// Scale-invariant block of a radial step (AdamW or SGD, `elem` being the optimizer's element update
/// applied to θ = 0, which returns the step without weight decay): real gradient (hθ + μw)·inv_rho·scale,
/// θ += step·inv_rho. Returns the next step's Σ(hθ + μw)² (in θ's units: divide by ρ²_{t+1}), Σhθ²,
/// and Σ step² in real units.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn radial_pass<F: Real>(
    part: Part<'_, F>,
    h: &[F],
    w: &[F],
    w_next: &[F],
    mu: F,
    inv_rho: F,
    scale: F,
    elem: impl Fn(&mut F, &mut F, F) -> F,
) -> PassSums {
    let mut acc_g = [F::ZERO; LANES];
    let mut acc_c = [F::ZERO; LANES];
    let mut acc_u = [F::ZERO; LANES];
    let blocks = part
        .theta
        .chunks_exact_mut(LANES)
        .zip(part.m.chunks_exact_mut(LANES))
        .zip(part.v.chunks_exact_mut(LANES))
        .zip(h.chunks_exact(LANES).zip(w.chunks_exact(LANES)).zip(w_next.chunks_exact(LANES)));
    for (((theta, m), v), ((hb, wb), wn)) in blocks {
        for j in 0..LANES {
            let hi = hb[j];
            let g = (hi * theta[j] + mu * wb[j]) * inv_rho * scale;
            let step = elem(&mut m[j], &mut v[j], g);
            let new = theta[j] + step * inv_rho;
            theta[j] = new;
            acc_u[j] = acc_u[j] + step * step;
            let ht = hi * new;
            let gn = ht + mu * wn[j];
            acc_g[j] = acc_g[j] + gn * gn;
            acc_c[j] = acc_c[j] + ht * new;
        }
    }
    PassSums { grad2_next: reduce(&acc_g), curv_next: reduce(&acc_c), update2: reduce(&acc_u) }
}

/// Radial constants of one sweep: the block boundary, ρ²'s growth per unit Σ_si step², and the
/// measured law (coef / |w_si(0)|², power) when there is one.
#[derive(Clone, Copy)]
struct RadialLayout {
    n_si: usize,
    growth: f64,
    law: Option<(f64, f64)>,
}

impl RadialLayout {
    fn new(r: &Radial, d_si: usize) -> Self {
        let growth = if d_si == 0 { 0.0 } else { r.si_params / (d_si as f64 * r.si_init_norm * r.si_init_norm) };
        let law = r.growth.map(|g| (g.coef / (r.si_init_norm * r.si_init_norm), g.power));
        RadialLayout { n_si: d_si.div_ceil(LANES) * LANES, growth, law }
    }

    /// ρ²_{t+1} from ρ²_t, the decay factor, the step's learning rate and Σ_si step².
    #[inline(always)]
    fn next_rho2(&self, rho2: f64, decay: f64, lr: f64, update2: f64) -> f64 {
        match self.law {
            None => decay * decay * rho2 + self.growth * update2,
            Some((coef, power)) => decay * decay * rho2 + coef * lr.powf(power),
        }
    }
}

/// One radial step of a lane: the scale-invariant block with `radial_pass`, the other block with the
/// plain kernel (`plain`), then ρ² and the next step's real ‖g‖². `decay` = 1 − lr·wd.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn radial_step<F: Real>(
    lane: &mut Lane<F>,
    lay: RadialLayout,
    h: &[F],
    w: &[F],
    w_next: &[F],
    mu: F,
    scale: F,
    decay: f64,
    lr: f64,
    elem: impl Fn(&mut F, &mut F, F) -> F,
    plain: impl FnOnce(Part<'_, F>, &[F], &[F], &[F]) -> PassSums,
) -> PassSums {
    let n = lay.n_si;
    let inv_rho = F::of(1.0 / lane.rho2.sqrt());
    let rho2 = lane.rho2;
    let (si, rest) = lane.split(n);
    let a = radial_pass(si, &h[..n], &w[..n], &w_next[..n], mu, inv_rho, scale, elem);
    let b = plain(rest, &h[n..], &w[n..], &w_next[n..]);
    let rho2_next = lay.next_rho2(rho2, decay, lr, a.update2);
    lane.rho2 = rho2_next;
    // The plain SGD kernel does not sum its update (NaN): only AdamW's twin reads update2.
    let update2 = if b.update2.is_nan() { a.update2 } else { a.update2 + b.update2 };
    PassSums { grad2_next: a.grad2_next / rho2_next + b.grad2_next, curv_next: a.curv_next + b.curv_next, update2 }
}

/// Sums Σ(hθ + μw)² and Σ h θ² over one block.
fn block_sums<F: Real>(theta: &[F], h: &[F], w: &[F], mu: F) -> (f64, f64) {
    let mut acc_g = [F::ZERO; LANES];
    let mut acc_c = [F::ZERO; LANES];
    for (i, ((&hi, &t), &wi)) in h.iter().zip(theta).zip(w).enumerate() {
        let ht = hi * t;
        let g = ht + mu * wi;
        acc_g[i % LANES] = acc_g[i % LANES] + g * g;
        acc_c[i % LANES] = acc_c[i % LANES] + ht * t;
    }
    (reduce(&acc_g), reduce(&acc_c))
}

/// Initial sums ‖g_0‖² and Σ h θ0² (ρ0 = 1, so the blocks simply add; with no scale-invariant
/// block, n_si = 0 and the sums are the plain model's).
fn initial_sums<F: Real>(lane: &mut Lane<F>, h: &[F], w: &[F], mu: F, n_si: usize) {
    let (g_si, c_si) = block_sums(&lane.theta[..n_si], &h[..n_si], &w[..n_si], mu);
    let (g, c) = block_sums(&lane.theta[n_si..], &h[n_si..], &w[n_si..], mu);
    if n_si == 0 {
        lane.grad2 = g;
        lane.curv = c;
    } else {
        lane.grad2 = g_si + g;
        lane.curv = c_si + c;
    }
}

/// Everything one trajectory accumulates.
struct Traj<F> {
    index: usize,
    config: RunConfig,
    mu: F,
    main: Lane<F>,
    twin: Option<Lane<F>>,
    steps_done: usize,
    clipped: usize,
    sum_norm: f64,
    sum_norm_after: f64,
    sum_scale: f64,
    sum_update2: f64,
    sum_update2_twin: f64,
    final_sum: f64,
    curve: Vec<f64>,
    diverged_step: Option<usize>,
    /// β1^k, β2^k for AdamW's bias corrections.
    beta_pows: (f64, f64),
}

// Inlined into each `simd` wrapper, which is what compiles it for that wrapper's target features.
#[inline(always)]
fn run_group<F: Real>(
    spec: &SweepSpec,
    seed_index: usize,
    configs: &[usize],
    record: bool,
    stop: &AtomicBool,
) -> (Vec<TrajectoryResult>, Option<StepRecord>) {
    let model = &spec.model;
    let d = model.d;
    // Layout: scale-invariant directions first (in spectrum order), each block padded to LANES;
    // slot[i] is where direction i lives. Without a radial part slot[i] = i and n_si = 0.
    let si = model.scale_invariant();
    let d_si = si.iter().filter(|&&s| s).count();
    // No scale-invariant direction (d_si = 0): the plain model, ρ stays 1.
    let radial = model.radial.filter(|_| d_si > 0).map(|r| RadialLayout::new(&r, d_si));
    let n_si = radial.map_or(0, |r| r.n_si);
    let n = n_si + (d - d_si).div_ceil(LANES) * LANES;
    let mut slot = vec![0usize; d];
    let (mut k_si, mut k_rest) = (0, n_si);
    for i in 0..d {
        if si[i] {
            slot[i] = k_si;
            k_si += 1;
        } else {
            slot[i] = k_rest;
            k_rest += 1;
        }
    }
    let h64 = model.spectrum();
    let sqrt_h: Vec<f64> = h64.iter().map(|x| x.sqrt()).collect();
    let mut h = vec![F::ZERO; n];
    for i in 0..d {
        h[slot[i]] = F::of(h64[i]);
    }
    let theta0 = model.theta0();
    let floor = model.loss_floor;
    let diverge_at = DIVERGENCE_FACTOR * (model.init_loss - floor);
    let steps = spec.steps;
    let n_last = (steps / 10).max(1);
    let final_from = steps + 1 - n_last;
    let cs = curve_steps(steps, spec.curve_points);

    let seed = spec.seeds[seed_index];
    let mut rng = Xoshiro256pp::new(derive(seed, &[NOISE_STREAM]));
    let mut draw = |w: &mut Vec<F>| {
        for i in 0..d {
            w[slot[i]] = F::of(sqrt_h[i] * rng.normal());
        }
    };
    let mut w = vec![F::ZERO; n];
    let mut w_next = vec![F::ZERO; n];
    draw(&mut w);

    let new_lane = |mu: F, w: &[F]| {
        let mut theta = vec![F::ZERO; n];
        for i in 0..d {
            theta[slot[i]] = F::of(theta0[i]);
        }
        let mut lane =
            Lane { theta, m: vec![F::ZERO; n], v: vec![F::ZERO; n], grad2: 0.0, curv: 0.0, rho2: 1.0, alive: true };
        initial_sums(&mut lane, &h, w, mu, n_si);
        lane
    };
    let mut trajs: Vec<Traj<F>> = configs
        .iter()
        .map(|&ci| {
            let config = spec.configs[ci];
            let mu = F::of((model.sigma2 / config.batch_size as f64).sqrt());
            let needs_twin =
                spec.twin && config.clip.is_some() && matches!(config.optimizer, Optimizer::AdamW(_));
            Traj {
                index: ci,
                config,
                mu,
                main: new_lane(mu, &w),
                twin: if needs_twin { Some(new_lane(mu, &w)) } else { None },
                steps_done: 0,
                clipped: 0,
                sum_norm: 0.0,
                sum_norm_after: 0.0,
                sum_scale: 0.0,
                sum_update2: 0.0,
                sum_update2_twin: 0.0,
                final_sum: 0.0,
                curve: Vec::with_capacity(cs.len()),
                diverged_step: None,
                beta_pows: (1.0, 1.0),
            }
        })
        .collect();
    let mut rec = if record { Some(StepRecord::default()) } else { None };

    let mut next_curve = 0usize;
    for t in 0..=steps {
        if stop.load(Ordering::Relaxed) {
            return (Vec::new(), None); // run_sweep_until discards the whole sweep
        }
        let is_curve = next_curve < cs.len() && cs[next_curve] == t;
        if is_curve {
            next_curve += 1;
        }
        if t < steps {
            draw(&mut w_next);
        }
        let lr_mult = spec.schedule.multiplier(t, steps);
        for tr in trajs.iter_mut() {
            if !tr.main.alive {
                if is_curve {
                    tr.curve.push(f64::INFINITY);
                }
                continue;
            }
            let loss = floor + 0.5 * tr.main.curv;
            if is_curve {
                tr.curve.push(loss);
            }
            if let Some(r) = rec.as_mut() {
                r.loss.push(loss);
                r.rho.push(tr.main.rho2.sqrt());
            }
            if !loss.is_finite() || loss - floor > diverge_at {
                tr.main.alive = false;
                tr.diverged_step = Some(t);
                continue;
            }
            if t >= final_from {
                tr.final_sum += loss;
            }
            if t == steps {
                continue;
            }
            let norm = tr.main.grad2.sqrt();
            let scale = clip_coef(norm, tr.config.clip);
            tr.steps_done += 1;
            if tr.config.clip.is_some_and(|c| norm > c) {
                tr.clipped += 1;
            }
            tr.sum_norm += norm;
            tr.sum_norm_after += norm * scale;
            tr.sum_scale += scale;
            if let Some(r) = rec.as_mut() {
                r.grad_norm_before.push(norm);
                r.grad_norm_after.push(norm * scale);
            }
            let lr = tr.config.lr * lr_mult;
            let (mu, sc) = (tr.mu, F::of(scale));
            let sums = match (&tr.config.optimizer, radial) {
                (Optimizer::AdamW(a), Some(lay)) => {
                    tr.beta_pows.0 *= a.beta1;
                    tr.beta_pows.1 *= a.beta2;
                    let c = AdamWStep::<F>::new(a, lr, tr.beta_pows.0, tr.beta_pows.1);
                    let decay = 1.0 - lr * a.weight_decay;
                    let elem = |m: &mut F, v: &mut F, g: F| adamw_elem(F::ZERO, m, v, g, &c);
                    let plain = |p: Part<'_, F>, h: &[F], w: &[F], wn: &[F]| {
                        adamw_pass::<F, true, true>(p, h, w, wn, mu, sc, &c)
                    };
                    let s = radial_step(&mut tr.main, lay, &h, &w, &w_next, mu, sc, decay, lr, elem, plain);
                    if let Some(tw) = tr.twin.as_mut().filter(|tw| tw.alive) {
                        let one = F::of(1.0);
                        let plain = |p: Part<'_, F>, h: &[F], w: &[F], wn: &[F]| {
                            adamw_pass::<F, true, true>(p, h, w, wn, mu, one, &c)
                        };
                        let t = radial_step(tw, lay, &h, &w, &w_next, mu, one, decay, lr, elem, plain);
                        if t.update2.is_finite() && s.update2.is_finite() {
                            tr.sum_update2 += s.update2;
                            tr.sum_update2_twin += t.update2;
                        } else {
                            tw.alive = false;
                        }
                    }
                    s
                }
                (Optimizer::Sgd(o), Some(lay)) => {
                    let c = SgdStep::<F>::new(o, lr);
                    let elem = |buf: &mut F, _: &mut F, g: F| sgd_elem(F::ZERO, buf, g, &c);
                    let plain = |p: Part<'_, F>, h: &[F], w: &[F], wn: &[F]| sgd_pass(p, h, w, wn, mu, sc, &c);
                    radial_step(&mut tr.main, lay, &h, &w, &w_next, mu, sc, 1.0 - lr * o.weight_decay, lr, elem, plain)
                }
                (Optimizer::AdamW(a), None) => {
                    tr.beta_pows.0 *= a.beta1;
                    tr.beta_pows.1 *= a.beta2;
                    let c = AdamWStep::<F>::new(a, lr, tr.beta_pows.0, tr.beta_pows.1);
                    match tr.twin.as_mut().filter(|tw| tw.alive) {
                        Some(tw) => {
                            // The twin needs only its update norm (its loss and gradient norm are
                            // never reported); it stops counting if that update stops being finite.
                            let (s, twin_update2) = adamw_pair_pass(&mut tr.main, tw, &h, &w, &w_next, mu, sc, &c);
                            if twin_update2.is_finite() && s.update2.is_finite() {
                                tr.sum_update2 += s.update2;
                                tr.sum_update2_twin += twin_update2;
                            } else {
                                tw.alive = false;
                            }
                            s
                        }
                        None => adamw_pass::<F, true, false>(tr.main.all(), &h, &w, &w_next, mu, sc, &c),
                    }
                }
                (Optimizer::Sgd(o), None) => {
                    sgd_pass(tr.main.all(), &h, &w, &w_next, mu, sc, &SgdStep::<F>::new(o, lr))
                }
            };
            tr.main.grad2 = sums.grad2_next;
            tr.main.curv = sums.curv_next;
        }
        std::mem::swap(&mut w, &mut w_next);
    }

    let results = trajs
        .iter()
        .map(|tr| summarize(tr, seed, n_last))
        .collect();
    if let Some(r) = rec.as_mut() {
        r.theta_final = (0..d).map(|i| trajs[0].main.theta[slot[i]].to_f64()).collect();
    }
    (results, rec)
}

fn summarize<F: Real>(tr: &Traj<F>, seed: u64, n_last: usize) -> TrajectoryResult {
    let k = tr.steps_done.max(1) as f64;
    let lr = tr.config.lr;
    let mean_scale = if tr.steps_done == 0 { 1.0 } else { tr.sum_scale / k };
    let effective_lr = match (&tr.config.optimizer, tr.config.clip) {
        (Optimizer::Sgd(_), _) => lr * mean_scale,
        (Optimizer::AdamW(_), None) => lr,
        (Optimizer::AdamW(_), Some(_)) if tr.twin.is_none() => f64::NAN,
        (Optimizer::AdamW(_), Some(_)) => {
            if tr.sum_update2_twin > 0.0 {
                lr * (tr.sum_update2 / tr.sum_update2_twin).sqrt()
            } else {
                lr
            }
        }
    };
    let diverged = tr.diverged_step.is_some();
    TrajectoryResult {
        config: tr.index,
        seed,
        final_loss: if diverged { f64::INFINITY } else { tr.final_sum / n_last as f64 },
        curve: tr.curve.clone(),
        clip_frequency: tr.clipped as f64 / k,
        grad_norm_before: tr.sum_norm / k,
        grad_norm_after: tr.sum_norm_after / k,
        clip_scale: mean_scale,
        effective_lr,
        diverged,
        diverged_step: tr.diverged_step,
        rho_final: tr.main.rho2.sqrt(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::optim::{AdamW, Sgd};

    fn model(d: usize, sigma2: f64) -> Nqm {
        Nqm { d, h_max: 1.0, alpha: 1.0, sigma2, init_loss: 3.0, loss_floor: 1.0, init_power: 0.0, radial: None }
    }
    const PLAIN_SGD: Optimizer = Optimizer::Sgd(Sgd { momentum: 0.0, weight_decay: 0.0 });
    const ADAMW: Optimizer = Optimizer::AdamW(AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 });

    fn cfg(batch_size: u64, lr: f64, clip: Option<f64>, optimizer: Optimizer) -> RunConfig {
        RunConfig { batch_size, lr, clip, optimizer }
    }

    fn spec(m: Nqm, configs: Vec<RunConfig>, seeds: Vec<u64>, steps: usize) -> SweepSpec {
        SweepSpec {
            model: m,
            configs,
            seeds,
            steps,
            schedule: Schedule::default(),
            curve_points: 12,
            precision: Precision::F64,
            twin: true,
            threads: None,
        }
    }

    #[test]
    fn noise_free_sgd_equals_closed_form() {
        let m = model(37, 0.0);
        let (lr, steps) = (0.7, 200);
        for precision in [Precision::F64, Precision::F32] {
            let (_, rec) =
                simulate_trajectory(&m, cfg(1, lr, None, PLAIN_SGD), 0, steps, Schedule::default(), precision).unwrap();
            let h = m.spectrum();
            let th0 = m.theta0();
            let tol = if precision == Precision::F64 { 1e-12 } else { 2e-5 };
            for i in 0..m.d {
                let want = (1.0 - lr * h[i]).powi(steps as i32) * th0[i];
                assert!((rec.theta_final[i] - want).abs() <= tol * th0[i], "{precision:?} dir {i}");
            }
            for t in [0, 1, 10, 200] {
                let th: Vec<f64> = (0..m.d).map(|i| (1.0 - lr * h[i]).powi(t as i32) * th0[i]).collect();
                let want = m.loss(&th);
                assert!((rec.loss[t] - want).abs() <= tol * want, "{precision:?} step {t}");
            }
        }
    }

    #[test]
    fn noisy_sgd_stationary_loss_matches_nqm_closed_form() {
        // SGD on the NQM: E[θ_i²] → η σ² h_i / (B h_i (2 − η h_i)), so
        // E[L] − L_min = Σ ½ h_i E[θ_i²] = Σ η σ² h_i / (2 B (2 − η h_i)).
        let m = Nqm { d: 8, h_max: 1.0, alpha: 1.0, sigma2: 2.0, init_loss: 3.0, loss_floor: 1.0, init_power: 0.0, radial: None };
        let (lr, b) = (0.5, 4u64);
        let seeds: Vec<u64> = (0..64).collect();
        let res = run_sweep(&spec(m.clone(), vec![cfg(b, lr, None, PLAIN_SGD)], seeds, 2000)).unwrap();
        let want: f64 = m
            .spectrum()
            .iter()
            .map(|h| lr * m.sigma2 * h / (2.0 * b as f64 * (2.0 - lr * h)))
            .sum();
        let x: Vec<f64> = res.iter().map(|r| r.final_loss - m.loss_floor).collect();
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt();
        let se = sd / (x.len() as f64).sqrt();
        assert!((mean - want).abs() < 4.0 * se, "simulated {mean} ± {se}, closed form {want}");
        // The test has power: a 10% error in the noise variance would be detected.
        assert!(0.1 * want > 4.0 * se);
    }

    #[test]
    fn clip_frequency_goes_to_zero_and_one() {
        let m = model(64, 1.0);
        let configs = vec![
            cfg(32, 0.01, Some(1e9), ADAMW),
            cfg(32, 0.01, Some(1e-9), ADAMW),
            cfg(32, 0.1, Some(1e9), PLAIN_SGD),
            cfg(32, 0.1, Some(1e-9), PLAIN_SGD),
        ];
        let res = run_sweep(&spec(m, configs, vec![0, 1], 300)).unwrap();
        for s in 0..2 {
            assert_eq!(res[s].clip_frequency, 0.0);
            assert_eq!(res[2 + s].clip_frequency, 1.0);
            assert_eq!(res[4 + s].clip_frequency, 0.0);
            assert_eq!(res[6 + s].clip_frequency, 1.0);
        }
    }

    #[test]
    fn clipped_norm_never_exceeds_threshold() {
        let m = model(50, 3.0);
        for (opt, lr) in [(ADAMW, 0.05), (PLAIN_SGD, 0.5)] {
            for c in [0.01, 0.3, 1.0, 5.0] {
                let (r, rec) =
                    simulate_trajectory(&m, cfg(2, lr, Some(c), opt), 3, 500, Schedule::default(), Precision::F32)
                        .unwrap();
                assert!(rec.grad_norm_after.iter().all(|&a| a <= c), "clip {c}");
                assert!(rec.grad_norm_after.iter().zip(&rec.grad_norm_before).all(|(a, b)| a <= b));
                assert!(r.grad_norm_after <= c && r.clip_scale <= 1.0);
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_threads_grouping_or_simd() {
        let m = model(100, 1.0);
        let configs: Vec<RunConfig> = [8u64, 64]
            .iter()
            .flat_map(|&b| {
                [1e-3, 1e-2, 1e-1].iter().flat_map(move |&lr| {
                    [Some(0.5), None].into_iter().flat_map(move |c| [cfg(b, lr, c, ADAMW), cfg(b, lr, c, PLAIN_SGD)])
                })
            })
            .collect();
        let mut s = spec(m, configs.clone(), vec![0, 7, 9], 400);
        s.precision = Precision::F32;
        s.threads = Some(1);
        let one = run_sweep(&s).unwrap();
        s.threads = Some(2);
        assert_eq!(one, run_sweep(&s).unwrap());
        // A config simulated alone gets the same noise and the same result as inside the sweep.
        let mut alone = s.clone();
        alone.configs = vec![configs[5]];
        let r = run_sweep(&alone).unwrap();
        for k in 0..3 {
            assert_eq!(TrajectoryResult { config: 5, ..r[k].clone() }, one[5 * 3 + k]);
        }
        // Every SIMD path gives the same bits as the plain one.
        let idx: Vec<usize> = (0..configs.len()).collect();
        assert_eq!(run_group::<f32>(&s, 1, &idx, false, &AtomicBool::new(false)).0, simd::run::<f32>(&s, 1, &idx, false, &AtomicBool::new(false)).0);
        assert_eq!(run_group::<f64>(&s, 1, &idx, false, &AtomicBool::new(false)).0, simd::run::<f64>(&s, 1, &idx, false, &AtomicBool::new(false)).0);
    }

    #[test]
    fn adamw_effective_lr_is_lr_when_never_clipped_and_far_above_clip_scale_when_always_clipped() {
        let m = model(64, 4.0);
        let res = run_sweep(&spec(m, vec![cfg(16, 0.01, Some(1e9), ADAMW), cfg(16, 0.01, Some(1e-3), ADAMW)], vec![1], 1000))
            .unwrap();
        assert_eq!(res[0].effective_lr, 0.01);
        // Clipping every step to 1e-3 shrinks the gradient a thousandfold, but Adam divides by
        // sqrt(v) of the clipped gradients too: the update barely changes.
        assert_eq!(res[1].clip_frequency, 1.0);
        assert!(res[1].clip_scale < 0.01);
        assert!(res[1].effective_lr > 0.3 * 0.01, "{}", res[1].effective_lr);
    }

    #[test]
    fn divergence_is_flagged_with_its_step() {
        // η h_max = 2.5 > 2: the sharpest direction grows by |1 − 2.5| = 1.5 per step.
        let m = model(4, 0.0);
        let res = run_sweep(&spec(m, vec![cfg(1, 2.5, None, PLAIN_SGD), cfg(1, 0.5, None, PLAIN_SGD)], vec![0], 100))
            .unwrap();
        assert!(res[0].diverged && res[0].final_loss.is_infinite());
        let k = res[0].diverged_step.unwrap();
        assert!(k > 1 && k < 30, "{k}");
        assert!(res[0].curve.last().unwrap().is_infinite());
        assert!(!res[1].diverged && res[1].diverged_step.is_none() && res[1].final_loss.is_finite());
    }

    fn with_radial(m: Nqm, si_fraction: f64, si_params: f64, si_init_norm: f64) -> Nqm {
        Nqm { radial: Some(crate::sim::Radial { si_fraction, si_params, si_init_norm, growth: None }), ..m }
    }

    #[test]
    fn radial_part_without_scale_invariant_directions_is_bit_identical_to_the_plain_model() {
        let m = model(100, 1.0);
        let configs: Vec<RunConfig> = [8u64, 64]
            .iter()
            .flat_map(|&b| [cfg(b, 3e-3, Some(0.5), ADAMW), cfg(b, 0.1, None, ADAMW), cfg(b, 0.3, Some(1.0), PLAIN_SGD)])
            .collect();
        for precision in [Precision::F32, Precision::F64] {
            let mut s = spec(m.clone(), configs.clone(), vec![0, 5], 300);
            s.precision = precision;
            let plain = run_sweep(&s).unwrap();
            // φ small enough that ⌊dφ⌋ = 0: no direction is scale-invariant
            s.model = with_radial(m.clone(), 0.005, 1e4, 0.5);
            assert_eq!(plain, run_sweep(&s).unwrap());
            assert!(plain.iter().all(|r| r.rho_final == 1.0));
        }
    }

    #[test]
    fn noise_free_sgd_radial_growth_follows_its_recurrence() {
        // φ = 0.4 of 10 directions: 4 scale-invariant. SGD without momentum or noise:
        //   si:    g = hθ/ρ, step = −lr·g, θ ← θ + step/ρ, ρ² ← (1 − lr·wd)²ρ² + Σ step² · P/(d_si·N0²)
        //   other: θ ← θ(1 − lr(h + wd))  (coupled weight decay, the plain closed form)
        let (p, n0, lr, wd, steps) = (5000.0, 3.0, 0.4, 0.05, 60);
        let m = with_radial(Nqm { d: 10, init_power: 0.0, ..model(10, 0.0) }, 0.4, p, n0);
        let sgd = Optimizer::Sgd(Sgd { momentum: 0.0, weight_decay: wd });
        let (res, rec) =
            simulate_trajectory(&m, cfg(1, lr, None, sgd), 0, steps, Schedule::default(), Precision::F64).unwrap();
        let si = m.scale_invariant();
        assert_eq!(si.iter().filter(|&&x| x).count(), 4);
        let h = m.spectrum();
        let mut th = m.theta0();
        let mut rho2 = 1.0f64;
        let growth = p / (4.0 * n0 * n0);
        for t in 0..steps {
            assert!((rec.rho[t] - rho2.sqrt()).abs() <= 1e-12 * rho2.sqrt(), "step {t}");
            let inv_rho = 1.0 / rho2.sqrt();
            let mut sum_step2 = 0.0;
            for i in 0..m.d {
                if si[i] {
                    let step = -lr * (h[i] * th[i] * inv_rho);
                    sum_step2 += step * step;
                    th[i] += step * inv_rho;
                } else {
                    th[i] *= 1.0 - lr * (h[i] + wd);
                }
            }
            rho2 = (1.0 - lr * wd).powi(2) * rho2 + growth * sum_step2;
        }
        assert!((res.rho_final - rho2.sqrt()).abs() <= 1e-12 * rho2.sqrt());
        assert!(res.rho_final > 1.5, "the test needs visible growth: {}", res.rho_final);
        for i in 0..m.d {
            assert!((rec.theta_final[i] - th[i]).abs() <= 1e-12 * m.theta0()[i].abs(), "direction {i}");
        }
        assert!((rec.loss[steps] - m.loss(&th)).abs() <= 1e-12);
    }

    #[test]
    fn measured_growth_law_sets_rho_in_closed_form() {
        // ρ²_{t+1} = a ρ²_t + b with a = (1 − lr·wd)², b = coef·lr^power/N0²:
        // ρ²_t = a^t + b(1 − a^t)/(1 − a), whatever the batch size, clip or optimizer state.
        let (coef, power, n0, steps) = (2.5, 1.3, 1.7, 200);
        let law = crate::sim::GrowthLaw { coef, power };
        let base = with_radial(model(64, 1.0), 0.5, 1e5, n0);
        let m = Nqm { radial: Some(crate::sim::Radial { growth: Some(law), ..base.radial.unwrap() }), ..base };
        let wd = match ADAMW {
            Optimizer::AdamW(a) => a.weight_decay,
            _ => unreachable!(),
        };
        for (b, lr, clip) in [(4u64, 3e-3, Some(0.5)), (64, 3e-3, None), (16, 0.02, Some(1e9))] {
            let (res, rec) =
                simulate_trajectory(&m, cfg(b, lr, clip, ADAMW), 1, steps, Schedule::default(), Precision::F64).unwrap();
            let a = (1.0 - lr * wd).powi(2);
            let bb = coef * lr.powf(power) / (n0 * n0);
            for t in [0, 1, 17, steps] {
                let want = (a.powi(t as i32) + bb * (1.0 - a.powi(t as i32)) / (1.0 - a)).sqrt();
                assert!((rec.rho[t] - want).abs() <= 1e-12 * want, "B {b} lr {lr} step {t}: {} vs {want}", rec.rho[t]);
            }
            assert_eq!(res.rho_final, rec.rho[steps]);
        }
        // without the law the same model grows ρ from the simulated update instead (version 2)
        let (_, v2) = simulate_trajectory(&base, cfg(4, 3e-3, Some(0.5), ADAMW), 1, steps, Schedule::default(), Precision::F64)
            .unwrap();
        let (_, v3) = simulate_trajectory(&m, cfg(4, 3e-3, Some(0.5), ADAMW), 1, steps, Schedule::default(), Precision::F64)
            .unwrap();
        assert_ne!(v2.rho[steps], v3.rho[steps]);
        assert_eq!(v2.rho[0], 1.0);
        // a bad law is an error, not a panic
        let bad = Nqm { radial: Some(crate::sim::Radial { growth: Some(crate::sim::GrowthLaw { coef: 1.0, power: -1.0 }), ..m.radial.unwrap() }), ..m.clone() };
        assert!(run_sweep(&spec(bad, vec![cfg(4, 3e-3, None, ADAMW)], vec![0], 10)).is_err());
    }

    #[test]
    fn radial_gradient_norm_scales_as_one_over_rho() {
        // Every direction scale-invariant, no noise: the clipped norm the kernel reports at step t is
        // |Hθ_t|/ρ_t, with θ_t and ρ_t from the record.
        let m = with_radial(model(16, 0.0), 1.0, 1e6, 1.0);
        let (_, rec) =
            simulate_trajectory(&m, cfg(4, 0.05, Some(1e9), ADAMW), 2, 40, Schedule::default(), Precision::F64).unwrap();
        assert!(rec.rho[40] > 2.0, "{}", rec.rho[40]);
        let (_, rec2) = simulate_trajectory(
            &Nqm { radial: None, ..m.clone() },
            cfg(4, 0.05, Some(1e9), ADAMW),
            2,
            1,
            Schedule::default(),
            Precision::F64,
        )
        .unwrap();
        // step 0: ρ = 1, same norm as the plain model
        assert!((rec.grad_norm_before[0] - rec2.grad_norm_before[0]).abs() <= 1e-12 * rec2.grad_norm_before[0]);
        // a later step: |Hθ|/ρ recomputed from a fresh 39-step run's final θ
        let (_, rec39) =
            simulate_trajectory(&m, cfg(4, 0.05, Some(1e9), ADAMW), 2, 39, Schedule::default(), Precision::F64).unwrap();
        let h = m.spectrum();
        let g: f64 = h.iter().zip(&rec39.theta_final).map(|(h, t)| (h * t).powi(2)).sum::<f64>().sqrt();
        assert!((rec.grad_norm_before[39] - g / rec39.rho[39]).abs() <= 1e-9 * g);
    }

    #[test]
    fn radial_adamw_grows_rho_faster_at_higher_lr_and_shrinks_the_gradient() {
        let plain = model(64, 1.0);
        let m = with_radial(plain.clone(), 0.5, 1e5, 2.0);
        let configs = vec![cfg(16, 1e-3, Some(1e9), ADAMW), cfg(16, 1e-2, Some(1e9), ADAMW)];
        let r = run_sweep(&spec(m, configs.clone(), vec![3], 500)).unwrap();
        let p = run_sweep(&spec(plain, configs, vec![3], 500)).unwrap();
        assert!(r[0].rho_final > 1.0 && r[1].rho_final > r[0].rho_final, "{} {}", r[0].rho_final, r[1].rho_final);
        assert!(p.iter().all(|x| x.rho_final == 1.0));
        assert!(r[1].grad_norm_before < p[1].grad_norm_before);
        // the twin runs with its own ρ: never clipped, so the effective LR is exactly the LR
        assert_eq!(r[0].effective_lr, 1e-3);
    }

    #[test]
    fn curve_steps_are_log_spaced_and_unique() {
        assert_eq!(curve_steps(1000, 5), vec![0, 1, 10, 100, 1000]);
        assert_eq!(curve_steps(3, 10), vec![0, 1, 2, 3]);
        assert_eq!(curve_steps(10, 0), Vec::<usize>::new());
    }

    #[test]
    fn bad_sweep_parameters_are_errors() {
        let good = spec(model(8, 1.0), vec![cfg(4, 0.1, Some(1.0), ADAMW)], vec![0], 10);
        assert!(run_sweep(&good).is_ok());
        let mut bad = vec![];
        let mut s = good.clone();
        s.configs[0].batch_size = 0;
        bad.push(s);
        let mut s = good.clone();
        s.configs[0].lr = -1.0;
        bad.push(s);
        let mut s = good.clone();
        s.configs[0].lr = f64::NAN;
        bad.push(s);
        let mut s = good.clone();
        s.configs[0].clip = Some(0.0);
        bad.push(s);
        let mut s = good.clone();
        s.configs[0].clip = Some(-1.0);
        bad.push(s);
        let mut s = good.clone();
        s.model.d = 0;
        bad.push(s);
        let mut s = good.clone();
        s.model.sigma2 = f64::NAN;
        bad.push(s);
        let mut s = good.clone();
        s.steps = 0;
        bad.push(s);
        let mut s = good.clone();
        s.threads = Some(0);
        bad.push(s);
        let mut s = good.clone();
        s.threads = Some(MAX_THREADS + 1);
        bad.push(s);
        let mut s = good.clone();
        s.curve_points = MAX_CURVE_POINTS + 1;
        bad.push(s);
        let mut s = good.clone();
        s.configs[0].optimizer = Optimizer::AdamW(AdamW { beta1: 0.9, beta2: 0.999, eps: 0.0, weight_decay: 0.01 });
        bad.push(s);
        for s in bad {
            assert!(run_sweep(&s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn a_stop_flag_ends_the_sweep_without_results() {
        let m = model(64, 1.0);
        let configs = vec![cfg(4, 0.05, Some(1.0), ADAMW), cfg(16, 0.1, None, PLAIN_SGD)];
        let sp = spec(m, configs, vec![0, 1, 2], 300);
        // never set: the same results as run_sweep
        let free = run_sweep_until(&sp, &AtomicBool::new(false)).unwrap().unwrap();
        assert_eq!(free, run_sweep(&sp).unwrap());
        // set before the start: no result, and no panic over the unfilled slots
        assert_eq!(run_sweep_until(&sp, &AtomicBool::new(true)).unwrap(), None);
        // bad input is still an error, not a stop
        let mut bad = sp.clone();
        bad.steps = 0;
        assert!(run_sweep_until(&bad, &AtomicBool::new(true)).is_err());
    }

    #[test]
    fn a_stop_set_mid_sweep_ends_it_within_moments() {
        // ~10^4 times longer than the test waits: only the flag can end it in time
        let m = model(4096, 1.0);
        let sp = spec(m, vec![cfg(4, 0.01, Some(1.0), ADAMW); 4], vec![0, 1], 5_000_000);
        let stop = AtomicBool::new(false);
        let t0 = std::time::Instant::now();
        let out = std::thread::scope(|s| {
            let h = s.spawn(|| run_sweep_until(&sp, &stop));
            std::thread::sleep(std::time::Duration::from_millis(200));
            stop.store(true, Ordering::Relaxed);
            h.join().unwrap()
        });
        assert_eq!(out.unwrap(), None);
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "took {:?}", t0.elapsed());
    }
}
