//! The noisy quadratic model (NQM; Zhang et al. 2019, "Which Algorithmic Choices Matter at Which
//! Batch Sizes?") in absolute units, so that its gradient norms compare with a real clip threshold.
//!
//! - loss L(θ) = L_min + ½ Σ_i h_i θ_i² over `d` directions, spectrum h_i = h_max · i^(-α);
//! - minibatch gradient g = Hθ + ξ, ξ_i ~ N(0, σ² h_i / B): per-example noise covariance σ²H;
//! - θ_i(0) = r · (h_i / h_max)^(−γ/2) with r set by the initial loss (½ Σ h_i θ_i(0)² =
//!   L(0) − L_min). γ = `init_power` shapes the start: γ = 0 is isotropic (the error spread evenly
//!   over the eigendirections, so the loss sits in the sharp ones), γ = 1 gives every direction the
//!   same share of the loss (the error sits in the flat ones). Given the initial loss, γ fixes the
//!   initial gradient norm, so a calibration can match both.
//! - optional [`Radial`] part (scale invariance): a fraction of the directions belongs to weights
//!   whose loss does not depend on their norm (weights feeding a LayerNorm). For those, θ is the
//!   direction on the sphere in units of the initial norm, the real weights are ρ·θ with ρ = |w|/|w(0)|,
//!   the real gradient is (Hθ + ξ)/ρ and a real step Δw moves θ by Δw/ρ; ρ² grows by |Δw|²/|w(0)|²
//!   each step (the update is orthogonal to w) and weight decay shrinks ρ instead of θ
//!   (van Laarhoven 2017; Li & Arora 2019; Wan et al. 2021). See `sweep` for the step.

use crate::error::CoreResult;
use crate::invalid;

/// NQM parameters. Python's `pyphase.nqm.NQMParams` is the user-facing twin of this struct.
#[derive(Clone, Debug, PartialEq)]
pub struct Nqm {
    /// Number of eigendirections.
    pub d: usize,
    /// Largest curvature h_1.
    pub h_max: f64,
    /// Spectrum decay exponent: h_i = h_max · i^(-alpha).
    pub alpha: f64,
    /// Per-example gradient noise covariance is sigma2 · H.
    pub sigma2: f64,
    /// Loss at θ(0).
    pub init_loss: f64,
    /// L_min, the loss at the optimum θ = 0.
    pub loss_floor: f64,
    /// γ: θ_i(0) ∝ h_i^(−γ/2); 0 = isotropic.
    pub init_power: f64,
    /// Scale-invariant part; None is the plain NQM (every result bit-identical to a model without it).
    pub radial: Option<Radial>,
}

/// The scale-invariant (radial) part of the model, in the real model's units (all measured on it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Radial {
    /// Fraction φ of the directions that are scale-invariant (spread evenly over the spectrum, so
    /// they hold a fraction φ of |G|², tr Σ and tr H); the calibration sets it to the measured share
    /// of |G|² at initialisation carried by the scale-invariant weights.
    pub si_fraction: f64,
    /// Number of real parameters in the scale-invariant group: an Adam step of RMS u per coordinate
    /// changes their norm² by u²·si_params.
    pub si_params: f64,
    /// Norm of the scale-invariant weights at initialisation, |w_si(0)|.
    pub si_init_norm: f64,
    /// Measured growth law of |w_si|² (format version 3); None grows ρ² from the simulated update
    /// (the spherical-motion formula, version 2).
    pub growth: Option<GrowthLaw>,
}

/// |w_si|² grows by `coef · lr^power` per step (lr the step's learning rate), before weight decay:
/// a law measured on the real model by short AdamW runs at a few learning rates, used in place of
/// the spherical-motion formula (which misses Adam's early coherent steps and its radial component).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrowthLaw {
    pub coef: f64,
    pub power: f64,
}

impl Radial {
    pub fn validate(&self) -> CoreResult<()> {
        if !(0.0..=1.0).contains(&self.si_fraction) {
            return Err(invalid!("si_fraction must be in [0, 1], got {}", self.si_fraction));
        }
        if !(self.si_params.is_finite() && self.si_params >= 1.0) {
            return Err(invalid!("si_params must be finite and >= 1, got {}", self.si_params));
        }
        if !(self.si_init_norm.is_finite() && self.si_init_norm > 0.0) {
            return Err(invalid!("si_init_norm must be finite and > 0, got {}", self.si_init_norm));
        }
        if let Some(g) = self.growth {
            if !(g.coef.is_finite() && g.coef >= 0.0) {
                return Err(invalid!("si_growth_coef must be finite and >= 0, got {}", g.coef));
            }
            if !(g.power.is_finite() && (0.0..=4.0).contains(&g.power)) {
                return Err(invalid!("si_growth_power must be in [0, 4], got {}", g.power));
            }
        }
        Ok(())
    }
}

/// Largest number of directions accepted: beyond this one trajectory's state no longer fits in cache
/// and a sweep would take hours; the calibration needs far fewer.
pub const MAX_D: usize = 1 << 20;

fn check_finite(name: &str, v: f64) -> CoreResult<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(invalid!("{name} must be finite, got {v}"))
    }
}

impl Nqm {
    /// Reject parameters that would make the model meaningless (the core never panics on them).
    pub fn validate(&self) -> CoreResult<()> {
        if self.d == 0 || self.d > MAX_D {
            return Err(invalid!("d must be in 1..={MAX_D}, got {}", self.d));
        }
        for (name, v) in [
            ("h_max", self.h_max),
            ("alpha", self.alpha),
            ("sigma2", self.sigma2),
            ("init_loss", self.init_loss),
            ("loss_floor", self.loss_floor),
            ("init_power", self.init_power),
        ] {
            check_finite(name, v)?;
        }
        if self.h_max <= 0.0 {
            return Err(invalid!("h_max must be > 0, got {}", self.h_max));
        }
        if self.alpha < 0.0 {
            return Err(invalid!("alpha must be >= 0, got {}", self.alpha));
        }
        if self.sigma2 < 0.0 {
            return Err(invalid!("sigma2 must be >= 0, got {}", self.sigma2));
        }
        if !(0.0..=2.0).contains(&self.init_power) {
            return Err(invalid!("init_power must be in [0, 2], got {}", self.init_power));
        }
        if self.init_loss <= self.loss_floor {
            return Err(invalid!(
                "init_loss ({}) must exceed loss_floor ({})",
                self.init_loss,
                self.loss_floor
            ));
        }
        if let Some(r) = &self.radial {
            r.validate()?;
        }
        let h_min = self.h_max * (self.d as f64).powf(-self.alpha);
        if h_min <= 0.0 || !h_min.is_finite() {
            return Err(invalid!(
                "spectrum underflows: h_max * d^-alpha = {h_min} (d = {}, alpha = {})",
                self.d,
                self.alpha
            ));
        }
        Ok(())
    }

    /// Which directions are scale-invariant: direction i (0-based) is when ⌊(i+1)φ⌋ > ⌊iφ⌋, which
    /// spreads ⌊dφ⌋ of them evenly over the spectrum. All false without a radial part.
    pub fn scale_invariant(&self) -> Vec<bool> {
        let phi = self.radial.map_or(0.0, |r| r.si_fraction);
        (0..self.d).map(|i| ((i + 1) as f64 * phi).floor() > (i as f64 * phi).floor()).collect()
    }

    /// Curvatures h_i = h_max · i^(-α), i = 1..=d (decreasing).
    pub fn spectrum(&self) -> Vec<f64> {
        (1..=self.d).map(|i| self.h_max * (i as f64).powf(-self.alpha)).collect()
    }

    /// θ_i(0) = r · (h_i/h_max)^(−γ/2), with r such that L(θ(0)) = init_loss.
    pub fn theta0(&self) -> Vec<f64> {
        let h = self.spectrum();
        let shape: Vec<f64> = h.iter().map(|&x| (x / self.h_max).powf(-0.5 * self.init_power)).collect();
        let curv: f64 = h.iter().zip(&shape).map(|(h, s)| h * s * s).sum();
        let r = (2.0 * (self.init_loss - self.loss_floor) / curv).sqrt();
        shape.iter().map(|s| r * s).collect()
    }

    /// L(θ) = L_min + ½ Σ h_i θ_i².
    pub fn loss(&self, theta: &[f64]) -> f64 {
        let h = self.spectrum();
        self.loss_floor + 0.5 * h.iter().zip(theta).map(|(h, t)| h * t * t).sum::<f64>()
    }

    /// Noise scale per direction at batch size B: sqrt(σ² h_i / B).
    pub fn noise_std(&self, batch: f64) -> Vec<f64> {
        self.spectrum().iter().map(|h| (self.sigma2 * h / batch).sqrt()).collect()
    }

    /// Closed-form quantities at θ(0): ‖G‖ = ‖Hθ(0)‖, tr(Σ) = σ² tr(H) per example, and McCandlish
    /// et al.'s (2018) simple noise scale B_simple = tr(Σ) / ‖G‖².
    pub fn init_stats(&self) -> InitStats {
        let h = self.spectrum();
        let th = self.theta0();
        let g2: f64 = h.iter().zip(&th).map(|(h, t)| (h * t) * (h * t)).sum();
        let trace_sigma = self.sigma2 * h.iter().sum::<f64>();
        InitStats {
            grad_norm: g2.sqrt(),
            trace_sigma,
            b_simple: trace_sigma / g2,
        }
    }
}

/// See [`Nqm::init_stats`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InitStats {
    /// ‖∇L(θ(0))‖, the full-batch gradient norm at the start.
    pub grad_norm: f64,
    /// Per-example gradient noise trace tr(Σ) = σ² Σ h_i.
    pub trace_sigma: f64,
    /// tr(Σ) / ‖G‖²: the batch size at which noise and signal norms are equal at the start.
    pub b_simple: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn small() -> Nqm {
        Nqm { d: 8, h_max: 2.0, alpha: 1.0, sigma2: 0.5, init_loss: 4.0, loss_floor: 1.0, init_power: 0.0, radial: None }
    }

    fn radial(si_fraction: f64) -> Option<Radial> {
        Some(Radial { si_fraction, si_params: 100.0, si_init_norm: 2.0, growth: None })
    }

    #[test]
    fn scale_invariant_directions_are_spread_evenly() {
        let count = |phi: f64, d: usize| Nqm { d, radial: radial(phi), ..small() }.scale_invariant();
        assert!(count(0.0, 8).iter().all(|&s| !s));
        assert!(count(1.0, 8).iter().all(|&s| s));
        assert_eq!(count(0.5, 8), vec![false, true, false, true, false, true, false, true]);
        let c = count(0.3, 1000);
        assert_eq!(c.iter().filter(|&&s| s).count(), 300);
        // every block of 10 consecutive directions holds 3 of them
        assert!(c.chunks(10).all(|b| b.iter().filter(|&&s| s).count() == 3));
        assert!(small().scale_invariant().iter().all(|&s| !s));
    }

    #[test]
    fn spectrum_is_power_law() {
        let h = small().spectrum();
        assert_eq!(h.len(), 8);
        assert!((h[0] - 2.0).abs() < 1e-15);
        assert!((h[3] - 0.5).abs() < 1e-15);
    }

    #[test]
    fn theta0_reproduces_init_loss_for_every_shape() {
        for g in [0.0, 0.5, 1.0, 2.0] {
            let m = Nqm { init_power: g, ..small() };
            assert!((m.loss(&m.theta0()) - 4.0).abs() < 1e-12);
        }
        let iso = small().theta0();
        assert!(iso.iter().all(|&t| (t - iso[0]).abs() < 1e-15));
        // γ = 1: every direction holds the same loss ½ h_i θ_i² = (4 − 1) / 8.
        let m = Nqm { init_power: 1.0, ..small() };
        for (h, t) in m.spectrum().iter().zip(m.theta0()) {
            assert!((0.5 * h * t * t - 3.0 / 8.0).abs() < 1e-12);
        }
    }

    #[test]
    fn init_stats_closed_form() {
        let m = small();
        let s = m.init_stats();
        let h = m.spectrum();
        let r2 = 2.0 * 3.0 / h.iter().sum::<f64>();
        let g2 = r2 * h.iter().map(|x| x * x).sum::<f64>();
        assert!((s.grad_norm - g2.sqrt()).abs() < 1e-12);
        assert!((s.b_simple - 0.5 * h.iter().sum::<f64>() / g2).abs() < 1e-12);
    }

    #[test]
    fn every_bad_parameter_is_rejected() {
        let bad = [
            Nqm { d: 0, ..small() },
            Nqm { h_max: 0.0, ..small() },
            Nqm { h_max: f64::NAN, ..small() },
            Nqm { alpha: -1.0, ..small() },
            Nqm { sigma2: -0.1, ..small() },
            Nqm { sigma2: f64::INFINITY, ..small() },
            Nqm { init_loss: 1.0, ..small() },
            Nqm { loss_floor: f64::NAN, ..small() },
            Nqm { alpha: 400.0, d: 1000, ..small() },
            Nqm { init_power: -0.5, ..small() },
            Nqm { init_power: f64::NAN, ..small() },
            Nqm { radial: radial(-0.1), ..small() },
            Nqm { radial: radial(1.5), ..small() },
            Nqm { radial: Some(Radial { si_params: 0.5, ..radial(0.5).unwrap() }), ..small() },
            Nqm { radial: Some(Radial { si_init_norm: 0.0, ..radial(0.5).unwrap() }), ..small() },
            Nqm { radial: Some(Radial { si_init_norm: f64::NAN, ..radial(0.5).unwrap() }), ..small() },
            Nqm { radial: Some(Radial { growth: Some(GrowthLaw { coef: -1.0, power: 1.0 }), ..radial(0.5).unwrap() }), ..small() },
            Nqm { radial: Some(Radial { growth: Some(GrowthLaw { coef: f64::INFINITY, power: 1.0 }), ..radial(0.5).unwrap() }), ..small() },
            Nqm { radial: Some(Radial { growth: Some(GrowthLaw { coef: 1.0, power: 4.5 }), ..radial(0.5).unwrap() }), ..small() },
            Nqm { radial: Some(Radial { growth: Some(GrowthLaw { coef: 1.0, power: f64::NAN }), ..radial(0.5).unwrap() }), ..small() },
        ];
        for m in bad {
            assert!(m.validate().is_err(), "{m:?} accepted");
        }
        assert!(small().validate().is_ok());
        assert!(Nqm { radial: radial(0.5), ..small() }.validate().is_ok());
    }
}
