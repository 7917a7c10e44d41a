//! PyO3 glue. `text` exposes tokenizer and batcher, `sim` the simulator.

pub mod text;
pub mod sim;

use crate::error::CoreError;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        match e {
            CoreError::Invalid(m) => PyValueError::new_err(m),
            CoreError::Io(m) => PyOSError::new_err(m),
        }
    }
}
