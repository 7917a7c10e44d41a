//! Python glue for the tokenizer and the batcher: converts numpy arrays and Python strings to
//! slices, releases the GIL around the heavy loops and maps `CoreError` to `ValueError`.

use crate::batcher;
use crate::tokenizer::{self, CharTokenizer, Unknown};
use numpy::ndarray::IxDyn;
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use std::path::PathBuf;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(batch_offsets, m)?)?;
    m.add_function(wrap_pyfunction!(eval_offsets, m)?)?;
    m.add_function(wrap_pyfunction!(gather_windows, m)?)?;
    m.add_function(wrap_pyfunction!(sample_batch, m)?)?;
    m.add_function(wrap_pyfunction!(sample_packed, m)?)?;
    m.add_function(wrap_pyfunction!(ngram_entropies, m)?)?;
    m.add_class::<PyCharTokenizer>()?;
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
            Tokens::U8(a) => {
                let $s = a.as_slice().map_err(not_contiguous)?;
                $body
            }
            Tokens::U16(a) => {
                let $s = a.as_slice().map_err(not_contiguous)?;
                $body
            }
            Tokens::U32(a) => {
                let $s = a.as_slice().map_err(not_contiguous)?;
                $body
            }
            Tokens::I32(a) => {
                let $s = a.as_slice().map_err(not_contiguous)?;
                $body
            }
            Tokens::I64(a) => {
                let $s = a.as_slice().map_err(not_contiguous)?;
                $body
            }
        }
    };
}

/// (x, y) windows returned by the batcher functions.
type WindowPair<'py> = (Bound<'py, PyArrayDyn<i64>>, Bound<'py, PyArrayDyn<i64>>);

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
        return Err(PyValueError::new_err(format!(
            "tokens must be a 1-D array, got {ndim} dimensions"
        )));
    }
    Ok(t)
}

/// `numpy.ndarray[uint8]`-style description of an argument for error messages.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    let ty = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into());
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

/// A new uninitialised int64 array. Large ones come from `numpy.empty`, whose failure is a
/// MemoryError (numpy's allocation failing inside `PyArray::new` would be a panic).
fn empty_i64<'py>(py: Python<'py>, shape: &[usize]) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
    let n = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
    match n {
        // SAFETY: uninitialised memory; every element is written by `gather_windows` before the
        // array is returned, and on error the array is dropped unseen.
        Some(n) if n <= SMALL_ARRAY => Ok(unsafe { PyArrayDyn::<i64>::new(py, IxDyn(shape), false) }),
        _ => {
            let arr = py.import("numpy")?.getattr("empty")?.call1((PyTuple::new(py, shape)?, "int64"))?;
            Ok(arr.cast_into::<PyArrayDyn<i64>>()?)
        }
    }
}

/// Elements up to which `empty_i64` allocates directly (128 MiB of int64).
const SMALL_ARRAY: usize = 1 << 24;

/// Validate a caller's output buffer (C-contiguous, writeable int64 of `shape`), or make one.
fn out_buffer<'py>(
    py: Python<'py>,
    name: &str,
    given: Option<&Bound<'py, PyAny>>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
    match given {
        None => empty_i64(py, shape),
        Some(obj) => {
            let arr = obj.cast::<PyArrayDyn<i64>>().map_err(|_| {
                PyValueError::new_err(format!(
                    "{name} must be a numpy int64 array, got {}",
                    describe(obj)
                ))
            })?;
            if arr.shape() != shape {
                return Err(PyValueError::new_err(format!(
                    "{name} has shape {:?}, expected {:?}",
                    arr.shape(),
                    shape
                )));
            }
            if !arr.is_c_contiguous() {
                return Err(PyValueError::new_err(format!(
                    "{name} must be C-contiguous"
                )));
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
) -> PyResult<WindowPair<'py>> {
    // every argument checked before anything is allocated: a window must fit, and the output too
    let n_tokens = with_tokens!(tokens, t => t.len());
    batcher::check_window(n_tokens, block)?;
    let total = offsets
        .len()
        .checked_mul(block)
        .ok_or_else(|| PyValueError::new_err(format!("{} offsets x block {block} is too large", offsets.len())))?;
    batcher::check_size(total, &format!("{} windows of block {block}", offsets.len()))?;
    let mut full: Vec<usize> = shape.to_vec();
    full.push(block);
    let (x, y) = match (out_x, out_y) {
        // no windows: two empty arrays (halves of one empty allocation would share an address,
        // which numpy's borrow check takes for the same array)
        (None, None) if total == 0 => (empty_i64(py, &full)?, empty_i64(py, &full)?),
        (None, None) => {
            // x and y are the two halves of one (2, ...) allocation. Two separate arrays of the
            // same size make glibc hand the memory back to the OS on every free (the freed top of
            // the heap reaches its trim threshold), and fresh pages cost more than the copy.
            let mut both = vec![2];
            both.extend_from_slice(&full);
            let pair = out_buffer(py, "out", None, &both)?;
            (
                pair.get_item(0)?.cast_into::<PyArrayDyn<i64>>()?,
                pair.get_item(1)?.cast_into::<PyArrayDyn<i64>>()?,
            )
        }
        _ => (
            out_buffer(py, "out_x", out_x, &full)?,
            out_buffer(py, "out_y", out_y, &full)?,
        ),
    };
    {
        let mut xw = x
            .try_readwrite()
            .map_err(|e| PyValueError::new_err(format!("out_x is not writeable: {e}")))?;
        let mut yw = y.try_readwrite().map_err(|e| {
            PyValueError::new_err(format!(
                "out_y is not writeable or is the same array as out_x: {e}"
            ))
        })?;
        let xs = xw
            .as_slice_mut()
            .map_err(|_| PyValueError::new_err("out_x must be C-contiguous"))?;
        let ys = yw
            .as_slice_mut()
            .map_err(|_| PyValueError::new_err("out_y must be C-contiguous"))?;
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
    let v =
        py.detach(|| batcher::batch_offsets(n_tokens, block, batch, &seeds, start_step, n_steps))?;
    numpy::PyArray1::from_vec(py, v).reshape(IxDyn(&[n_steps, k, batch]))
}

/// Offsets 0, block, 2*block, ... of non-overlapping evaluation windows.
#[pyfunction]
fn eval_offsets<'py>(
    py: Python<'py>,
    n_tokens: usize,
    block: usize,
) -> PyResult<Bound<'py, numpy::PyArray1<i64>>> {
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
) -> PyResult<WindowPair<'py>> {
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
) -> PyResult<WindowPair<'py>> {
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
) -> PyResult<WindowPair<'py>> {
    let tokens = extract_tokens(tokens)?;
    let seeds = seeds_from(seeds)?;
    let n = with_tokens!(tokens, t => t.len());
    let offs = batcher::batch_offsets(n, block, batch, &seeds, step, 1)?;
    windows(
        py,
        &tokens,
        &offs,
        &[seeds.len(), batch],
        block,
        out_x,
        out_y,
    )
}

// ------------------------------------------------------------------------------------ tokenizer

/// Run `$body` with `$s` bound to a slice of ids read from a numpy array of any integer dtype
/// (copied only if the array is not contiguous) or from a Python sequence of ints. `$body` is the
/// value the enclosing function returns.
macro_rules! with_ids {
    ($obj:expr, $s:ident => $body:expr) => {{
        let obj: &Bound<'_, PyAny> = $obj;
        with_ids!(@array obj, $s => $body; u16, u32, i64, i32, u8, u64, i16, i8);
        let v: Vec<i64> = obj.extract().map_err(|_| {
            PyValueError::new_err(format!(
                "ids must be a numpy integer array or a list of ints, got {}",
                describe(obj)
            ))
        })?;
        let $s: &[i64] = &v;
        $body
    }};
    (@array $obj:ident, $s:ident => $body:expr; $($t:ty),*) => {
        $(
            if let Ok(a) = $obj.extract::<PyReadonlyArrayDyn<'_, $t>>() {
                let owned: Vec<$t>;
                let $s: &[$t] = match a.as_slice() {
                    Ok(sl) => sl,
                    Err(_) => {
                        owned = a.as_array().iter().copied().collect();
                        &owned
                    }
                };
                return $body;
            }
        )*
    };
}

/// Encode into a numpy array of the tokenizer's dtype. numpy allocates it: for large arrays its
/// allocator asks for huge pages, and first-touch page faults on a fresh 22 MB Rust `Vec` cost as
/// much as the encoding itself (measured: 790 MB/s fresh vs 1.6 GB/s into warm memory).
fn encode_to_numpy<'py>(
    py: Python<'py>,
    tok: &CharTokenizer,
    text: &str,
    n_chars: usize,
    unknown: Unknown,
) -> PyResult<Bound<'py, PyAny>> {
    fn run<'py, T: tokenizer::TokenId + numpy::Element>(
        py: Python<'py>,
        tok: &CharTokenizer,
        text: &str,
        n_chars: usize,
        unknown: Unknown,
    ) -> PyResult<Bound<'py, PyAny>> {
        let arr = numpy::PyArray1::<T>::zeros(py, n_chars, false);
        {
            let mut w = arr.readwrite();
            let out = w.as_slice_mut().expect("a new array is contiguous");
            let n = py.detach(|| tok.encode_into(text, unknown, out))?;
            if n != n_chars {
                return Err(PyValueError::new_err(format!(
                    "internal error: encoded {n} of {n_chars} characters"
                )));
            }
        }
        Ok(arr.into_any())
    }
    if tok.dtype() == "uint16" {
        run::<u16>(py, tok, text, n_chars, unknown)
    } else {
        run::<u32>(py, tok, text, n_chars, unknown)
    }
}

fn unk_char(unk: Option<&str>) -> PyResult<Option<char>> {
    Ok(unk
        .map(|u| tokenizer::single_char(u, usize::MAX))
        .transpose()?)
}

/// Character-level tokenizer over Unicode code points (vocabulary: sorted distinct characters).
#[pyclass(name = "CharTokenizer", module = "pyphase._core", frozen)]
struct PyCharTokenizer {
    inner: CharTokenizer,
}

#[pymethods]
impl PyCharTokenizer {
    /// Tokenizer over `vocab` in the given order (id = position); `unk`, if not listed, is appended.
    #[new]
    #[pyo3(signature = (vocab, unk=None))]
    fn new(vocab: Vec<String>, unk: Option<&str>) -> PyResult<Self> {
        let chars = vocab
            .iter()
            .enumerate()
            .map(|(i, s)| tokenizer::single_char(s, i))
            .collect::<Result<Vec<char>, _>>()?;
        Ok(Self {
            inner: CharTokenizer::new(chars, unk_char(unk)?)?,
        })
    }

    #[staticmethod]
    #[pyo3(signature = (text, unk=None))]
    fn from_text(py: Python<'_>, text: &Bound<'_, PyString>, unk: Option<&str>) -> PyResult<Self> {
        let s = text.to_str()?;
        let unk = unk_char(unk)?;
        Ok(Self {
            inner: py.detach(|| CharTokenizer::from_text(s, unk))?,
        })
    }

    #[staticmethod]
    #[pyo3(signature = (data, unk=None))]
    fn from_bytes(py: Python<'_>, data: &Bound<'_, PyBytes>, unk: Option<&str>) -> PyResult<Self> {
        let b = data.as_bytes();
        let unk = unk_char(unk)?;
        Ok(Self {
            inner: py.detach(|| CharTokenizer::from_bytes(b, unk))?,
        })
    }

    #[staticmethod]
    #[pyo3(signature = (path, unk=None))]
    fn from_file(py: Python<'_>, path: PathBuf, unk: Option<&str>) -> PyResult<Self> {
        let unk = unk_char(unk)?;
        Ok(Self {
            inner: py.detach(|| CharTokenizer::from_file(&path, unk))?,
        })
    }

    #[staticmethod]
    fn from_json(s: &str) -> PyResult<Self> {
        Ok(Self {
            inner: CharTokenizer::from_json(s)?,
        })
    }

    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        Ok(Self {
            inner: CharTokenizer::load(&path)?,
        })
    }

    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    fn save(&self, path: PathBuf) -> PyResult<()> {
        Ok(self.inner.save(&path)?)
    }

    #[getter]
    fn vocab(&self) -> Vec<String> {
        self.inner.vocab().iter().map(|c| c.to_string()).collect()
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype()
    }

    #[getter]
    fn unk(&self) -> Option<String> {
        self.inner.unk().map(|c| c.to_string())
    }

    /// Ids of `data` (str, or UTF-8 bytes) as a uint16/uint32 array.
    #[pyo3(signature = (data, unknown="error"))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        unknown: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let unknown = Unknown::parse(unknown)?;
        let (text, n_chars) = if let Ok(s) = data.cast::<PyString>() {
            // len(str) is the number of code points, known without scanning the text.
            (s.to_str()?, s.len()?)
        } else if let Ok(b) = data.cast::<PyBytes>() {
            let raw = b.as_bytes();
            let text = py.detach(|| tokenizer::check_utf8(raw))?;
            (text, py.detach(|| text.chars().count()))
        } else {
            return Err(PyValueError::new_err(format!(
                "data must be str or bytes, got {}",
                describe(data)
            )));
        };
        encode_to_numpy(py, &self.inner, text, n_chars, unknown)
    }

    /// Ids of a UTF-8 text file.
    #[pyo3(signature = (path, unknown="error"))]
    fn encode_file<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        unknown: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let unknown = Unknown::parse(unknown)?;
        let tok = &self.inner;
        let bytes = py.detach(|| std::fs::read(&path)).map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!("cannot read {}: {e}", path.display()))
        })?;
        let text = py
            .detach(|| tokenizer::check_utf8(&bytes))
            .map_err(|e| PyValueError::new_err(format!("{}: {e}", path.display())))?;
        let n_chars = py.detach(|| text.chars().count());
        encode_to_numpy(py, tok, text, n_chars, unknown)
            .map_err(|e| PyValueError::new_err(format!("{}: {}", path.display(), e.value(py))))
    }

    /// Text of `ids` (numpy integer array or list of ints).
    fn decode(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<String> {
        let tok = &self.inner;
        with_ids!(ids, s => Ok(py.detach(|| tok.decode(s))?))
    }

    fn __len__(&self) -> usize {
        self.inner.vocab_size()
    }

    fn __repr__(&self) -> String {
        format!(
            "CharTokenizer(vocab_size={}, dtype={:?}, unk={:?})",
            self.inner.vocab_size(),
            self.inner.dtype(),
            self.inner.unk()
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        match other.cast::<PyCharTokenizer>() {
            Ok(o) => {
                o.get().inner.vocab() == self.inner.vocab()
                    && o.get().inner.unk() == self.inner.unk()
            }
            Err(_) => false,
        }
    }

    /// Pickle through the JSON form (so tokenizers cross process boundaries).
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let ctor = slf.get_type().getattr("from_json")?;
        let args = PyTuple::new(slf.py(), [slf.get().inner.to_json()])?;
        Ok((ctor, args))
    }
}

/// [H(X_t), H(X_t|X_{t-1}), ...] up to `max_order`, nats per token (plug-in estimates).
#[pyfunction]
#[pyo3(signature = (ids, max_order=3))]
fn ngram_entropies(py: Python<'_>, ids: &Bound<'_, PyAny>, max_order: usize) -> PyResult<Vec<f64>> {
    with_ids!(ids, s => Ok(py.detach(|| tokenizer::ngram_entropies(s, max_order))?))
}
