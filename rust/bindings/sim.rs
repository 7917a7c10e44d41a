//! Python glue for the simulator: keyword arguments → `sim` structs, the GIL released around the
//! sweep (which Ctrl-C stops within moments, see `run_interruptibly`), results → numpy arrays in a
//! dict. All checking happens in the core (`CoreError::Invalid` → ValueError); here only what
//! Python's types allow and Rust's do not (negative integers).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::invalid;
use crate::sim::{
    self, AdamW, GrowthLaw, Nqm, Optimizer, Precision, Radial, RunConfig, Schedule, Sgd, SweepSpec, TrajectoryResult,
};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    m.add_function(wrap_pyfunction!(simulate_trajectory, m)?)?;
    m.add_function(wrap_pyfunction!(nqm_describe, m)?)?;
    m.add_function(wrap_pyfunction!(adamw_reference, m)?)?;
    m.add_function(wrap_pyfunction!(sgd_reference, m)?)?;
    Ok(())
}

fn nonneg(name: &str, v: i64) -> PyResult<u64> {
    u64::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} must be >= 0, got {v}")))
}

/// The radial part from its optional keyword arguments: the three radial ones all given, or none
/// (the plain NQM); the growth law's two (coef, power) both or neither, and only with a radial part.
fn radial(
    si_fraction: Option<f64>,
    si_params: Option<f64>,
    si_init_norm: Option<f64>,
    si_growth_coef: Option<f64>,
    si_growth_power: Option<f64>,
) -> PyResult<Option<Radial>> {
    let growth = match (si_growth_coef, si_growth_power) {
        (None, None) => None,
        (Some(coef), Some(power)) => Some(GrowthLaw { coef, power }),
        _ => return Err(invalid!("si_growth_coef and si_growth_power must be given together (or neither)").into()),
    };
    match (si_fraction, si_params, si_init_norm) {
        (None, None, None) if growth.is_some() => {
            Err(invalid!("si_growth_coef and si_growth_power need the radial part (si_fraction, si_params, si_init_norm)").into())
        }
        (None, None, None) => Ok(None),
        (Some(si_fraction), Some(si_params), Some(si_init_norm)) => {
            Ok(Some(Radial { si_fraction, si_params, si_init_norm, growth }))
        }
        _ => Err(invalid!("si_fraction, si_params and si_init_norm must be given together (or none of them)").into()),
    }
}

#[allow(clippy::too_many_arguments)]
fn model(
    d: i64,
    h_max: f64,
    alpha: f64,
    sigma2: f64,
    init_loss: f64,
    loss_floor: f64,
    init_power: f64,
    radial: Option<Radial>,
) -> PyResult<Nqm> {
    let d = nonneg("d", d)? as usize;
    let m = Nqm { d, h_max, alpha, sigma2, init_loss, loss_floor, init_power, radial };
    m.validate()?;
    Ok(m)
}

#[allow(clippy::too_many_arguments)]
fn optimizer(name: &str, betas: (f64, f64), eps: f64, weight_decay: f64, momentum: f64) -> PyResult<Optimizer> {
    let o = match name {
        "adamw" => Optimizer::AdamW(AdamW { beta1: betas.0, beta2: betas.1, eps, weight_decay }),
        "sgd" => Optimizer::Sgd(Sgd { momentum, weight_decay }),
        other => return Err(invalid!("optimizer must be 'adamw' or 'sgd', got {other:?}").into()),
    };
    o.validate()?;
    Ok(o)
}

fn schedule(warmup_steps: i64, name: &str) -> PyResult<Schedule> {
    let cosine = match name {
        "constant" => false,
        "cosine" => true,
        other => return Err(invalid!("schedule must be 'constant' or 'cosine', got {other:?}").into()),
    };
    Ok(Schedule { warmup_steps: nonneg("warmup_steps", warmup_steps)? as usize, cosine })
}

fn precision(name: &str) -> PyResult<Precision> {
    match name {
        "f32" => Ok(Precision::F32),
        "f64" => Ok(Precision::F64),
        other => Err(invalid!("precision must be 'f32' or 'f64', got {other:?}").into()),
    }
}

/// Simulate every (config, seed) pair of an NQM sweep; see `pyphase/_core.pyi`.
#[pyfunction]
#[pyo3(signature = (
    *, d, h_max, alpha, sigma2, init_loss, loss_floor, init_power=0.0,
    si_fraction=None, si_params=None, si_init_norm=None, si_growth_coef=None, si_growth_power=None,
    batch_size, lr, clip, seeds, steps,
    optimizer="adamw", betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, momentum=0.9,
    warmup_steps=0, schedule="constant", curve_points=20, precision="f32", twin=true, threads=None
))]
#[allow(clippy::too_many_arguments)]
fn simulate<'py>(
    py: Python<'py>,
    d: i64,
    h_max: f64,
    alpha: f64,
    sigma2: f64,
    init_loss: f64,
    loss_floor: f64,
    init_power: f64,
    si_fraction: Option<f64>,
    si_params: Option<f64>,
    si_init_norm: Option<f64>,
    si_growth_coef: Option<f64>,
    si_growth_power: Option<f64>,
    batch_size: Vec<i64>,
    lr: Vec<f64>,
    clip: Vec<Option<f64>>,
    seeds: Vec<i64>,
    steps: i64,
    optimizer: &str,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    warmup_steps: i64,
    schedule: &str,
    curve_points: i64,
    precision: &str,
    twin: bool,
    threads: Option<i64>,
) -> PyResult<Bound<'py, PyDict>> {
    if batch_size.len() != lr.len() || lr.len() != clip.len() {
        return Err(invalid!(
            "batch_size, lr and clip must have one entry per config; got {}, {} and {}",
            batch_size.len(),
            lr.len(),
            clip.len()
        )
        .into());
    }
    let opt = self::optimizer(optimizer, betas, eps, weight_decay, momentum)?;
    let configs = batch_size
        .iter()
        .zip(&lr)
        .zip(&clip)
        .map(|((&b, &lr), &clip)| Ok(RunConfig { batch_size: nonneg("batch_size", b)?, lr, clip, optimizer: opt }))
        .collect::<PyResult<Vec<_>>>()?;
    let spec = SweepSpec {
        model: model(d, h_max, alpha, sigma2, init_loss, loss_floor, init_power, radial(si_fraction, si_params, si_init_norm, si_growth_coef, si_growth_power)?)?,
        configs,
        seeds: seeds.iter().map(|&s| nonneg("seed", s)).collect::<PyResult<_>>()?,
        steps: nonneg("steps", steps)? as usize,
        schedule: self::schedule(warmup_steps, schedule)?,
        curve_points: nonneg("curve_points", curve_points)? as usize,
        precision: self::precision(precision)?,
        twin,
        threads: threads.map(|t| nonneg("threads", t).map(|t| t as usize)).transpose()?,
    };
    let results = run_interruptibly(py, &spec)?;
    let n_seeds = spec.seeds.len();
    let curve_steps = sim::curve_steps(spec.steps, spec.curve_points);
    results_dict(py, &results, n_seeds, &curve_steps)
}

/// How often the sweep's caller looks for a pending Python signal while the sweep runs.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// `sim::run_sweep` on another thread, without the GIL, while this thread checks for Python
/// signals every SIGNAL_POLL: on Ctrl-C (or any signal whose handler raises) the sweep is told to
/// stop, is waited for (a step's time), and the handler's exception is raised here.
fn run_interruptibly(py: Python<'_>, spec: &SweepSpec) -> PyResult<Vec<TrajectoryResult>> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (tx, mut rx) = mpsc::channel();
        let stop = &stop;
        s.spawn(move || {
            let _ = tx.send(sim::run_sweep_until(spec, stop));
        });
        loop {
            // the receiver moves in and out: it is Send but not Sync
            let (back, got) = py.detach(move || {
                let got = rx.recv_timeout(SIGNAL_POLL);
                (rx, got)
            });
            rx = back;
            match got {
                Ok(done) => {
                    return match done? {
                        Some(results) => Ok(results),
                        // only this function sets the flag, and it returns the signal's error then
                        None => Err(PyKeyboardInterrupt::new_err("simulation stopped")),
                    };
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        stop.store(true, Ordering::Relaxed);
                        py.detach(move || {
                            let _ = rx.recv(); // the sweep ends within a step once it sees the flag
                        });
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(PyRuntimeError::new_err("internal: the simulation thread ended without a result"));
                }
            }
        }
    })
}

fn results_dict<'py>(
    py: Python<'py>,
    results: &[TrajectoryResult],
    n_seeds: usize,
    curve_steps: &[usize],
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let col_f = |f: fn(&TrajectoryResult) -> f64| results.iter().map(f).collect::<Vec<f64>>();
    out.set_item("config", results.iter().map(|r| r.config as i64).collect::<Vec<_>>().into_pyarray(py))?;
    out.set_item("seed_index", (0..results.len()).map(|i| (i % n_seeds.max(1)) as i64).collect::<Vec<_>>().into_pyarray(py))?;
    out.set_item("seed", results.iter().map(|r| r.seed as i64).collect::<Vec<_>>().into_pyarray(py))?;
    out.set_item("final_loss", col_f(|r| r.final_loss).into_pyarray(py))?;
    out.set_item("clip_frequency", col_f(|r| r.clip_frequency).into_pyarray(py))?;
    out.set_item("grad_norm_before", col_f(|r| r.grad_norm_before).into_pyarray(py))?;
    out.set_item("grad_norm_after", col_f(|r| r.grad_norm_after).into_pyarray(py))?;
    out.set_item("clip_scale", col_f(|r| r.clip_scale).into_pyarray(py))?;
    out.set_item("effective_lr", col_f(|r| r.effective_lr).into_pyarray(py))?;
    out.set_item("diverged", PyArray1::from_iter(py, results.iter().map(|r| r.diverged)))?;
    out.set_item("rho_final", col_f(|r| r.rho_final).into_pyarray(py))?;
    out.set_item(
        "diverged_step",
        results.iter().map(|r| r.diverged_step.map_or(-1, |s| s as i64)).collect::<Vec<_>>().into_pyarray(py),
    )?;
    let k = curve_steps.len();
    let flat: Vec<f64> = results.iter().flat_map(|r| r.curve.iter().copied()).collect();
    let curve = Array2::from_shape_vec((results.len(), k), flat)
        .map_err(|e| PyValueError::new_err(format!("internal: curve shape: {e}")))?;
    out.set_item("curve", curve.into_pyarray(py))?;
    out.set_item("curve_steps", curve_steps.iter().map(|&s| s as i64).collect::<Vec<_>>().into_pyarray(py))?;
    Ok(out)
}

/// One trajectory with per-step loss and gradient norms, and the final θ.
#[pyfunction]
#[pyo3(signature = (
    *, d, h_max, alpha, sigma2, init_loss, loss_floor, init_power=0.0,
    si_fraction=None, si_params=None, si_init_norm=None, si_growth_coef=None, si_growth_power=None,
    batch_size, lr, clip, seed, steps,
    optimizer="adamw", betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, momentum=0.9,
    warmup_steps=0, schedule="constant", precision="f64"
))]
#[allow(clippy::too_many_arguments)]
fn simulate_trajectory<'py>(
    py: Python<'py>,
    d: i64,
    h_max: f64,
    alpha: f64,
    sigma2: f64,
    init_loss: f64,
    loss_floor: f64,
    init_power: f64,
    si_fraction: Option<f64>,
    si_params: Option<f64>,
    si_init_norm: Option<f64>,
    si_growth_coef: Option<f64>,
    si_growth_power: Option<f64>,
    batch_size: i64,
    lr: f64,
    clip: Option<f64>,
    seed: i64,
    steps: i64,
    optimizer: &str,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    warmup_steps: i64,
    schedule: &str,
    precision: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let m = model(d, h_max, alpha, sigma2, init_loss, loss_floor, init_power, radial(si_fraction, si_params, si_init_norm, si_growth_coef, si_growth_power)?)?;
    let config = RunConfig {
        batch_size: nonneg("batch_size", batch_size)?,
        lr,
        clip,
        optimizer: self::optimizer(optimizer, betas, eps, weight_decay, momentum)?,
    };
    let sched = self::schedule(warmup_steps, schedule)?;
    let (seed, steps, prec) = (nonneg("seed", seed)?, nonneg("steps", steps)? as usize, self::precision(precision)?);
    let (res, rec) = py.detach(|| sim::simulate_trajectory(&m, config, seed, steps, sched, prec))?;
    let out = results_dict(py, std::slice::from_ref(&res), 1, &[])?;
    out.set_item("loss", rec.loss.into_pyarray(py))?;
    out.set_item("grad_norm_before_steps", rec.grad_norm_before.into_pyarray(py))?;
    out.set_item("grad_norm_after_steps", rec.grad_norm_after.into_pyarray(py))?;
    out.set_item("theta_final", rec.theta_final.into_pyarray(py))?;
    out.set_item("rho_steps", rec.rho.into_pyarray(py))?;
    Ok(out)
}

/// Closed-form NQM quantities: spectrum, θ(0), ‖G‖ at θ(0), tr(Σ), B_simple.
#[pyfunction]
#[pyo3(signature = (
    *, d, h_max, alpha, sigma2, init_loss, loss_floor, init_power=0.0,
    si_fraction=None, si_params=None, si_init_norm=None, si_growth_coef=None, si_growth_power=None
))]
#[allow(clippy::too_many_arguments)]
fn nqm_describe<'py>(
    py: Python<'py>,
    d: i64,
    h_max: f64,
    alpha: f64,
    sigma2: f64,
    init_loss: f64,
    loss_floor: f64,
    init_power: f64,
    si_fraction: Option<f64>,
    si_params: Option<f64>,
    si_init_norm: Option<f64>,
    si_growth_coef: Option<f64>,
    si_growth_power: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let m = model(d, h_max, alpha, sigma2, init_loss, loss_floor, init_power, radial(si_fraction, si_params, si_init_norm, si_growth_coef, si_growth_power)?)?;
    let s = m.init_stats();
    let out = PyDict::new(py);
    out.set_item("spectrum", m.spectrum().into_pyarray(py))?;
    out.set_item("theta0", m.theta0().into_pyarray(py))?;
    out.set_item("init_grad_norm", s.grad_norm)?;
    out.set_item("trace_sigma", s.trace_sigma)?;
    out.set_item("b_simple", s.b_simple)?;
    out.set_item("scale_invariant", PyArray1::from_iter(py, m.scale_invariant()))?;
    Ok(out)
}

fn reference<'py>(
    py: Python<'py>,
    opt: Optimizer,
    grads: PyReadonlyArray2<'py, f64>,
    theta0: PyReadonlyArray1<'py, f64>,
    lr: f64,
    clip: Option<f64>,
) -> PyResult<Bound<'py, numpy::PyArray2<f64>>> {
    let ga = grads.as_array();
    let (steps, d) = ga.dim();
    // Row-major copy whatever the input's strides.
    let g: Vec<f64> = ga.iter().copied().collect();
    let th: Vec<f64> = theta0.as_array().iter().copied().collect();
    let out = sim::reference_trajectory(&opt, &g, d, &th, lr, clip)?;
    let arr = Array2::from_shape_vec((steps + 1, d), out)
        .map_err(|e| PyValueError::new_err(format!("internal: reference shape: {e}")))?;
    Ok(arr.into_pyarray(py))
}

/// θ after each torch.optim.AdamW step on the given gradients (clipped as clip_grad_norm_ would).
#[pyfunction]
#[pyo3(signature = (grads, theta0, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, clip=None))]
#[allow(clippy::too_many_arguments)]
fn adamw_reference<'py>(
    py: Python<'py>,
    grads: PyReadonlyArray2<'py, f64>,
    theta0: PyReadonlyArray1<'py, f64>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    clip: Option<f64>,
) -> PyResult<Bound<'py, numpy::PyArray2<f64>>> {
    let opt = optimizer("adamw", betas, eps, weight_decay, 0.0)?;
    reference(py, opt, grads, theta0, lr, clip)
}

/// θ after each torch.optim.SGD step (dampening 0, nesterov off) on the given gradients.
#[pyfunction]
#[pyo3(signature = (grads, theta0, lr, momentum=0.0, weight_decay=0.0, clip=None))]
fn sgd_reference<'py>(
    py: Python<'py>,
    grads: PyReadonlyArray2<'py, f64>,
    theta0: PyReadonlyArray1<'py, f64>,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    clip: Option<f64>,
) -> PyResult<Bound<'py, numpy::PyArray2<f64>>> {
    let opt = optimizer("sgd", (0.9, 0.999), 1e-8, weight_decay, momentum)?;
    reference(py, opt, grads, theta0, lr, clip)
}
