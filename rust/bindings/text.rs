//! Python glue for the tokenizer and the batcher: converts numpy arrays and Python strings to
//! slices, releases the GIL around the heavy loops and maps `CoreError` to `ValueError`.

use crate::batcher;
use numpy::ndarray::IxDyn;
use numpy::{
    PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(batch_offsets, m)?)?;
    m.add_function(wrap_pyfunction!(eval_offsets, m)?)?;
    m.add_function(wrap_pyfunction!(gather_windows, m)?)?;
    m.add_function(wrap_pyfunction!(sample_batch, m)?)?;
    m.add_function(wrap_pyfunction!(sample_packed, m)?)?;
    Ok(())
}

// ------------------------------------------------------------------------------------ helpers

/// A contiguous 1-D token array of any integer dtype the tokenizer (or a user) produces.
enum Tokens<'py> {
    U8(PyReadonlyArrayDyn<'py, u8>),
    U16(PyReadonlyArrayDyn<'py, u16>),
    U32(PyReadonlyArrayDyn<'py, u32>),
    I32(PyReadonlyArrayDyn<'py, i32>),
    I64(PyReadonlyArrayDyn<'py, i64>),
}

/// Run `$body` with `$s` bound to the token slice, whatever its element type.
macro_rules! with_tokens {
    ($tok:expr, $s:ident => $body:expr) => {
        match &$tok {
            Tokens::U8(a) => { let $s = a.as_slice().map_err(not_contiguous)?; $body }
            Tokens::U16(a) => { let $s = a.as_slice().map_err(not_contiguous)?; $body }
            Tokens::U32(a) => { let $s = a.as_slice().map_err(not_contiguous)?; $body }
            Tokens::I32(a) => { let $s = a.as_slice().map_err(not_contiguous)?; $body }
            Tokens::I64(a) => { let $s = a.as_slice().map_err(not_contiguous)?; $body }
        }
    };
}

fn not_contiguous<E>(_: E) -> PyErr {
    PyValueError::new_err("tokens must be a C-contiguous array (use np.ascontiguousarray)")
}

fn extract_tokens<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Tokens<'py>> {
    let t = if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, u16>>() {
        Tokens::U16(a)
    } else if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, u32>>() {
        Tokens::U32(a)
    } else if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, u8>>() {
        Tokens::U8(a)
    } else if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, i32>>() {
        Tokens::I32(a)
    } else if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, i64>>() {
        Tokens::I64(a)
    } else {
        return Err(PyValueError::new_err(format!(
            "tokens must be a numpy array of uint16, uint32, uint8, int32 or int64, got {}",
            describe(obj)
        )));
    };
    let ndim = match &t {
        Tokens::U8(a) => a.ndim(),
        Tokens::U16(a) => a.ndim(),
        Tokens::U32(a) => a.ndim(),
        Tokens::I32(a) => a.ndim(),
        Tokens::I64(a) => a.ndim(),
    };
    if ndim != 1 {
        return Err(PyValueError::new_err(format!("tokens must be a 1-D array, got {ndim} dimensions")));
    }
    Ok(t)
}

/// `numpy.ndarray[uint8]`-style description of an argument for error messages.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    let ty = obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into());
    match obj.getattr("dtype") {
        Ok(d) => format!("{ty}[{d}]"),
        Err(_) => ty,
    }
}

fn seeds_from(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    obj.extract::<Vec<u64>>().map_err(|_| {
        PyValueError::new_err(format!(
            "seeds must be a list of integers in [0, 2**64), got {}",
            obj.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })
}

/// Validate a caller's output buffer (C-contiguous, writeable int64 of `shape`), or make one.
fn out_buffer<'py>(
    py: Python<'py>,
    name: &str,
    given: Option<&Bound<'py, PyAny>>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
    match given {
        None => {
            // SAFETY: uninitialised memory; every element is written by `gather_windows` before
            // the array is returned, and on error the array is dropped unseen.
            Ok(unsafe { PyArrayDyn::<i64>::new(py, IxDyn(shape), false) })
        }
        Some(obj) => {
            let arr = obj.cast::<PyArrayDyn<i64>>().map_err(|_| {
                PyValueError::new_err(format!("{name} must be a numpy int64 array, got {}", describe(obj)))
            })?;
            if arr.shape() != shape {
                return Err(PyValueError::new_err(format!(
                    "{name} has shape {:?}, expected {:?}",
                    arr.shape(),
                    shape
                )));
            }
            if !arr.is_c_contiguous() {
                return Err(PyValueError::new_err(format!("{name} must be C-contiguous")));
            }
            Ok(arr.clone())
        }
    }
}

/// Gather `offsets` windows into new arrays (or the caller's) of shape `shape + (block,)`.
fn windows<'py>(
    py: Python<'py>,
    tokens: &Tokens<'py>,
    offsets: &[i64],
    shape: &[usize],
    block: usize,
    out_x: Option<&Bound<'py, PyAny>>,
    out_y: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyArrayDyn<i64>>, Bound<'py, PyArrayDyn<i64>>)> {
    let mut full: Vec<usize> = shape.to_vec();
    full.push(block);
    let (x, y) = match (out_x, out_y) {
        (None, None) => {
            // x and y are the two halves of one (2, ...) allocation. Two separate arrays of the
            // same size make glibc hand the memory back to the OS on every free (the freed top of
            // the heap reaches its trim threshold), and fresh pages cost more than the copy.
            let mut both = vec![2];
            both.extend_from_slice(&full);
            let pair = out_buffer(py, "out", None, &both)?;
            (pair.get_item(0)?.cast_into::<PyArrayDyn<i64>>()?, pair.get_item(1)?.cast_into::<PyArrayDyn<i64>>()?)
        }
        _ => (out_buffer(py, "out_x", out_x, &full)?, out_buffer(py, "out_y", out_y, &full)?),
    };
    {
        let mut xw = x
            .try_readwrite()
            .map_err(|e| PyValueError::new_err(format!("out_x is not writeable: {e}")))?;
        let mut yw = y.try_readwrite().map_err(|e| {
            PyValueError::new_err(format!("out_y is not writeable or is the same array as out_x: {e}"))
        })?;
        let xs = xw.as_slice_mut().map_err(|_| PyValueError::new_err("out_x must be C-contiguous"))?;
        let ys = yw.as_slice_mut().map_err(|_| PyValueError::new_err("out_y must be C-contiguous"))?;
        with_tokens!(tokens, t => py.detach(|| batcher::gather_windows(t, offsets, block, xs, ys)))?;
    }
    Ok((x, y))
}

// ------------------------------------------------------------------------------------ batcher

/// Start offsets of training windows, shape (n_steps, len(seeds), batch), int64.
#[pyfunction]
#[pyo3(signature = (n_tokens, block, batch, seeds, start_step, n_steps))]
fn batch_offsets<'py>(
    py: Python<'py>,
    n_tokens: usize,
    block: usize,
    batch: usize,
    seeds: &Bound<'py, PyAny>,
    start_step: u64,
    n_steps: usize,
) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
    let seeds = seeds_from(seeds)?;
    let k = seeds.len();
    let v = py.detach(|| batcher::batch_offsets(n_tokens, block, batch, &seeds, start_step, n_steps))?;
    Ok(numpy::PyArray1::from_vec(py, v).reshape(IxDyn(&[n_steps, k, batch]))?)
}

/// Offsets 0, block, 2*block, ... of non-overlapping evaluation windows.
#[pyfunction]
fn eval_offsets<'py>(py: Python<'py>, n_tokens: usize, block: usize) -> PyResult<Bound<'py, numpy::PyArray1<i64>>> {
    let v = batcher::eval_offsets(n_tokens, block)?;
    Ok(numpy::PyArray1::from_vec(py, v))
}

/// x = tokens[o:o+block], y = tokens[o+1:o+block+1] for every offset o, shape offsets.shape + (block,).
#[pyfunction]
#[pyo3(signature = (tokens, offsets, block, out_x=None, out_y=None))]
fn gather_windows<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    offsets: PyReadonlyArrayDyn<'py, i64>,
    block: usize,
    out_x: Option<&Bound<'py, PyAny>>,
    out_y: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyArrayDyn<i64>>, Bound<'py, PyArrayDyn<i64>>)> {
    let tokens = extract_tokens(tokens)?;
    let shape = offsets.shape().to_vec();
    let owned;
    let offs: &[i64] = match offsets.as_slice() {
        Ok(s) => s,
        Err(_) => {
            owned = offsets.as_array().iter().copied().collect::<Vec<i64>>();
            &owned
        }
    };
    windows(py, &tokens, offs, &shape, block, out_x, out_y)
}

/// One stream's batch at `step`: x, y of shape (batch, block).
#[pyfunction]
fn sample_batch<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    block: usize,
    batch: usize,
    seed: u64,
    step: u64,
) -> PyResult<(Bound<'py, PyArrayDyn<i64>>, Bound<'py, PyArrayDyn<i64>>)> {
    let tokens = extract_tokens(tokens)?;
    let n = with_tokens!(tokens, t => t.len());
    let offs = batcher::batch_offsets(n, block, batch, &[seed], step, 1)?;
    windows(py, &tokens, &offs, &[batch], block, None, None)
}

/// K independent streams at `step`: x, y of shape (len(seeds), batch, block).
#[pyfunction]
#[pyo3(signature = (tokens, block, batch, seeds, step, out_x=None, out_y=None))]
#[allow(clippy::too_many_arguments)]
fn sample_packed<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    block: usize,
    batch: usize,
    seeds: &Bound<'py, PyAny>,
    step: u64,
    out_x: Option<&Bound<'py, PyAny>>,
    out_y: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyArrayDyn<i64>>, Bound<'py, PyArrayDyn<i64>>)> {
    let tokens = extract_tokens(tokens)?;
    let seeds = seeds_from(seeds)?;
    let n = with_tokens!(tokens, t => t.len());
    let offs = batcher::batch_offsets(n, block, batch, &seeds, step, 1)?;
    windows(py, &tokens, &offs, &[seeds.len(), batch], block, out_x, out_y)
}
