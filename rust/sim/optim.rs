//! Optimizers and clipping, written to compute what torch computes:
//!
//! - clipping: `torch.nn.utils.clip_grad_norm_` — g ← g · min(1, c / (‖g‖ + 1e-6)), applied to the
//!   gradient before the optimizer sees it (so AdamW's m and v see the clipped gradient);
//! - SGD: `torch.optim.SGD` with momentum μ, dampening 0, nesterov off, coupled weight decay
//!   (d_p = g + wd·θ; buf = μ·buf + d_p, the first buffer being d_p; θ ← θ − lr·buf);
//! - AdamW: `torch.optim.AdamW` — θ ← θ(1 − lr·wd); m ← lerp(m, g, 1 − β1);
//!   v ← β2·v + (1 − β2)·g²; θ ← θ − (lr / (1 − β1^k)) · m / (sqrt(v) / sqrt(1 − β2^k) + ε);
//! - schedule: the trainer's multiplier (linear warmup (s+1)/w, then constant or cosine to 0).
//!
//! The per-element updates (`adamw_elem`, `sgd_elem`) are shared by the fused sweep kernel and by
//! the reference entry points that tests compare against torch, so those tests check the engine's
//! arithmetic, not a copy of it.

use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Sub};

use crate::error::CoreResult;
use crate::invalid;

/// What the per-element updates need: arithmetic, sqrt and a conversion from f64 scalars.
/// Implemented by f32, f64 and by the sweep's fixed-width blocks of them, so one update function
/// serves the scalar reference and the vectorized engine.
pub trait Arith:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    /// The f64 scalar `x` in this type (rounded for f32, broadcast for blocks).
    fn of(x: f64) -> Self;
    fn sqrt(self) -> Self;
}

/// Floating-point type of the simulation state (f32 or f64).
pub trait Real: Arith + Send + Sync + Debug + PartialOrd + 'static {
    const ZERO: Self;
    fn to_f64(self) -> f64;
}

impl Arith for f32 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Arith for f64 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

/// torch.optim.SGD hyperparameters (dampening 0, nesterov off).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub momentum: f64,
    pub weight_decay: f64,
}

/// torch.optim.AdamW hyperparameters (amsgrad off).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd(Sgd),
    AdamW(AdamW),
}

impl Optimizer {
    pub fn validate(&self) -> CoreResult<()> {
        let unit = |name: &str, v: f64| -> CoreResult<()> {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(invalid!("{name} must be in [0, 1), got {v}"))
            }
        };
        let nonneg = |name: &str, v: f64| -> CoreResult<()> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(invalid!("{name} must be finite and >= 0, got {v}"))
            }
        };
        match self {
            Optimizer::Sgd(s) => {
                unit("momentum", s.momentum)?;
                nonneg("weight_decay", s.weight_decay)
            }
            Optimizer::AdamW(a) => {
                unit("beta1", a.beta1)?;
                unit("beta2", a.beta2)?;
                // eps > 0: with eps = 0 a direction whose gradient is 0 (the SIMD padding, or a
                // flat one) divides 0 by 0 and the update is NaN
                if !(a.eps.is_finite() && a.eps > 0.0) {
                    return Err(invalid!("eps must be finite and > 0, got {}", a.eps));
                }
                nonneg("weight_decay", a.weight_decay)
            }
        }
    }
}

/// Check one learning rate: finite and >= 0.
pub fn check_lr(lr: f64) -> CoreResult<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(invalid!("lr must be finite and >= 0, got {lr}"))
    }
}

/// Check one clip threshold: None (off) or finite and > 0.
pub fn check_clip(clip: Option<f64>) -> CoreResult<()> {
    match clip {
        Some(c) if !(c.is_finite() && c > 0.0) => {
            Err(invalid!("clip must be finite and > 0 (or None for off), got {c}"))
        }
        _ => Ok(()),
    }
}

/// The factor torch's clip_grad_norm_ multiplies the gradient by: min(1, c / (‖g‖ + 1e-6)).
/// The 1e-6 keeps the clipped norm strictly below c.
#[inline]
pub fn clip_coef(norm: f64, clip: Option<f64>) -> f64 {
    match clip {
        Some(c) => (c / (norm + 1e-6)).min(1.0),
        None => 1.0,
    }
}

/// LR multiplier schedule, identical to `pyphase.train.lr_multipliers`: linear warmup
/// min(1, (s+1)/w) for s < w, then 1 (constant) or ½(1 + cos(π·clip((s−w)/max(1, n−w), 0, 1))).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Schedule {
    pub warmup_steps: usize,
    pub cosine: bool,
}

impl Schedule {
    pub fn validate(&self, steps: usize) -> CoreResult<()> {
        if self.warmup_steps > steps {
            return Err(invalid!("warmup_steps ({}) exceeds steps ({steps})", self.warmup_steps));
        }
        Ok(())
    }

    /// Multiplier at 0-based step `s` of `n`.
    pub fn multiplier(&self, s: usize, n: usize) -> f64 {
        let w = self.warmup_steps;
        if s < w {
            return ((s + 1) as f64 / w as f64).min(1.0);
        }
        if self.cosine {
            let prog = ((s - w) as f64 / (n.saturating_sub(w)).max(1) as f64).clamp(0.0, 1.0);
            0.5 * (1.0 + (std::f64::consts::PI * prog).cos())
        } else {
            1.0
        }
    }
}

/// Per-step AdamW scalars (computed in f64 as torch computes them in Python floats).
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep<F> {
    decay: F,
    lerp_w: F,
    beta2: F,
    one_minus_beta2: F,
    neg_step_size: F,
    inv_bc2_sqrt: F,
    eps: F,
}

impl<F: Arith> AdamWStep<F> {
    /// Scalars for one step at learning rate `lr`, given β1^k and β2^k for torch's step count k
    /// (k = 1 on the first step). Callers keep running products of β, which differ from
    /// `beta ** k` by a few ulps at most.
    pub fn new(a: &AdamW, lr: f64, beta1_pow: f64, beta2_pow: f64) -> Self {
        let bc1 = 1.0 - beta1_pow;
        let bc2 = 1.0 - beta2_pow;
        AdamWStep {
            decay: F::of(1.0 - lr * a.weight_decay),
            lerp_w: F::of(1.0 - a.beta1),
            beta2: F::of(a.beta2),
            one_minus_beta2: F::of(1.0 - a.beta2),
            neg_step_size: F::of(-(lr / bc1)),
            inv_bc2_sqrt: F::of(1.0 / bc2.sqrt()),
            eps: F::of(a.eps),
        }
    }
}

/// One AdamW element update; returns the new θ. Operation order follows torch's kernels
/// (mul_, lerp_ for weight < 0.5, mul_().addcmul_(), sqrt()/bc2_sqrt + eps, addcdiv_).
#[inline(always)]
pub fn adamw_elem<F: Arith>(theta: F, m: &mut F, v: &mut F, g: F, c: &AdamWStep<F>) -> F {
    let theta = theta * c.decay;
    *m = *m + c.lerp_w * (g - *m);
    *v = *v * c.beta2 + c.one_minus_beta2 * g * g;
    let denom = (*v).sqrt() * c.inv_bc2_sqrt + c.eps;
    theta + c.neg_step_size * *m / denom
}

/// Per-step SGD scalars.
#[derive(Clone, Copy, Debug)]
pub struct SgdStep<F> {
    neg_lr: F,
    momentum: F,
    weight_decay: F,
}

impl<F: Arith> SgdStep<F> {
    pub fn new(s: &Sgd, lr: f64) -> Self {
        SgdStep { neg_lr: F::of(-lr), momentum: F::of(s.momentum), weight_decay: F::of(s.weight_decay) }
    }
}

/// One SGD element update with momentum buffer `buf` (starting at 0, which reproduces torch's
/// "first buffer = d_p" exactly since 0·μ + d_p = d_p); returns the new θ.
#[inline(always)]
pub fn sgd_elem<F: Arith>(theta: F, buf: &mut F, g: F, c: &SgdStep<F>) -> F {
    let dp = g + c.weight_decay * theta;
    *buf = *buf * c.momentum + dp;
    theta + c.neg_lr * *buf
}

/// Apply `opt` to a given gradient sequence (row-major `steps × d`), clipping each gradient as
/// clip_grad_norm_ would; returns θ after each step, row-major `(steps + 1) × d` (row 0 = θ0).
/// Deterministic, f64: the entry point tests compare with torch.optim on the same gradients.
pub fn reference_trajectory(
    opt: &Optimizer,
    grads: &[f64],
    d: usize,
    theta0: &[f64],
    lr: f64,
    clip: Option<f64>,
) -> CoreResult<Vec<f64>> {
    opt.validate()?;
    check_lr(lr)?;
    check_clip(clip)?;
    if d == 0 || theta0.len() != d {
        return Err(invalid!("theta0 has length {} but gradients have d = {d} (must be > 0)", theta0.len()));
    }
    if !grads.len().is_multiple_of(d) {
        return Err(invalid!("gradient array of {} values is not a whole number of rows of d = {d}", grads.len()));
    }
    if grads.iter().chain(theta0).any(|x| !x.is_finite()) {
        return Err(invalid!("gradients and theta0 must be finite (found NaN or inf)"));
    }
    let steps = grads.len() / d;
    let mut theta = theta0.to_vec();
    let mut m = vec![0.0f64; d];
    let mut v = vec![0.0f64; d];
    let mut out = Vec::with_capacity((steps + 1) * d);
    out.extend_from_slice(&theta);
    let (mut b1p, mut b2p) = (1.0, 1.0);
    for g in grads.chunks_exact(d) {
        let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        let scale = clip_coef(norm, clip);
        match opt {
            Optimizer::AdamW(a) => {
                b1p *= a.beta1;
                b2p *= a.beta2;
                let c = AdamWStep::<f64>::new(a, lr, b1p, b2p);
                for i in 0..d {
                    theta[i] = adamw_elem(theta[i], &mut m[i], &mut v[i], g[i] * scale, &c);
                }
            }
            Optimizer::Sgd(s) => {
                let c = SgdStep::<f64>::new(s, lr);
                for i in 0..d {
                    theta[i] = sgd_elem(theta[i], &mut m[i], g[i] * scale, &c);
                }
            }
        }
        out.extend_from_slice(&theta);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADAM: AdamW = AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };

    #[test]
    fn first_adamw_step_moves_each_coordinate_by_about_lr() {
        // With bias correction the first step is lr · g/(|g| + eps) ≈ lr · sign(g), plus decay.
        let out = reference_trajectory(&Optimizer::AdamW(ADAM), &[3.0, -0.5], 2, &[1.0, 1.0], 0.1, None).unwrap();
        let decayed = 1.0 * (1.0 - 0.1 * 0.01);
        assert!((out[2] - (decayed - 0.1 * 3.0 / (3.0 + 1e-8))).abs() < 1e-12);
        assert!((out[3] - (decayed + 0.1 * 0.5 / (0.5 + 1e-8))).abs() < 1e-12);
    }

    #[test]
    fn sgd_momentum_matches_hand_computation() {
        let opt = Optimizer::Sgd(Sgd { momentum: 0.5, weight_decay: 0.0 });
        let out = reference_trajectory(&opt, &[1.0, 1.0], 1, &[0.0], 0.1, None).unwrap();
        // buf1 = 1, θ1 = -0.1; buf2 = 0.5 + 1 = 1.5, θ2 = -0.25.
        assert!((out[1] + 0.1).abs() < 1e-15 && (out[2] + 0.25).abs() < 1e-15);
    }

    #[test]
    fn clipping_scales_the_gradient_to_below_c() {
        let opt = Optimizer::Sgd(Sgd { momentum: 0.0, weight_decay: 0.0 });
        let out = reference_trajectory(&opt, &[3.0, 4.0], 2, &[0.0, 0.0], 1.0, Some(1.0)).unwrap();
        let step = (out[2] * out[2] + out[3] * out[3]).sqrt();
        assert!(step < 1.0 && step > 1.0 - 1e-6, "{step}");
        assert_eq!(clip_coef(0.5, Some(1.0)), 1.0);
        assert_eq!(clip_coef(1e9, None), 1.0);
    }

    #[test]
    fn schedule_matches_trainer_formula() {
        let s = Schedule { warmup_steps: 4, cosine: true };
        assert_eq!(s.multiplier(0, 14), 0.25);
        assert_eq!(s.multiplier(3, 14), 1.0);
        assert!((s.multiplier(4, 14) - 1.0).abs() < 1e-15);
        assert!((s.multiplier(9, 14) - 0.5).abs() < 1e-15);
        assert!(s.multiplier(13, 14) > 0.0);
        assert_eq!(Schedule::default().multiplier(7, 10), 1.0);
        assert!(Schedule { warmup_steps: 11, cosine: false }.validate(10).is_err());
    }

    #[test]
    fn bad_arguments_are_errors() {
        let a = Optimizer::AdamW(ADAM);
        assert!(reference_trajectory(&a, &[1.0], 1, &[0.0], -0.1, None).is_err());
        assert!(reference_trajectory(&a, &[1.0], 1, &[0.0], f64::NAN, None).is_err());
        assert!(reference_trajectory(&a, &[1.0], 1, &[0.0], 0.1, Some(0.0)).is_err());
        assert!(reference_trajectory(&a, &[1.0], 1, &[0.0], 0.1, Some(f64::NAN)).is_err());
        assert!(reference_trajectory(&a, &[f64::NAN], 1, &[0.0], 0.1, None).is_err());
        assert!(reference_trajectory(&a, &[1.0, 2.0, 3.0], 2, &[0.0, 0.0], 0.1, None).is_err());
        assert!(reference_trajectory(&a, &[], 0, &[], 0.1, None).is_err());
        let bad = Optimizer::AdamW(AdamW { beta1: 1.0, ..ADAM });
        assert!(reference_trajectory(&bad, &[1.0], 1, &[0.0], 0.1, None).is_err());
        let bad = Optimizer::Sgd(Sgd { momentum: -0.1, weight_decay: 0.0 });
        assert!(reference_trajectory(&bad, &[1.0], 1, &[0.0], 0.1, None).is_err());
    }
}
