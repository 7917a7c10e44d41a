//! One error type for the whole core. Bindings turn every variant into a Python `ValueError`
//! (or `OSError` for I/O) carrying the message; the core never panics on user input.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// Input the caller can fix: bad argument, bad text, unknown character...
    Invalid(String),
    /// File-system problem, with the path in the message.
    Io(String),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Invalid(m) | CoreError::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CoreError {}

pub type CoreResult<T> = Result<T, CoreError>;

/// Shorthand for an `Invalid` error built with `format!`.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::error::CoreError::Invalid(format!($($arg)*)) };
}
