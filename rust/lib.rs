//! pyphase-core: plain-Rust core (tokenizer, batcher, simulator) plus the PyO3 glue that exposes it
//! as `pyphase._core`. Everything below `bindings` only converts types, releases the GIL and maps
//! errors; the algorithms live in their own modules and are tested with `cargo test`.

pub mod batcher;
pub mod error;
pub mod rng;
pub mod sim;
pub mod tokenizer;

#[cfg(feature = "python")]
mod bindings;

#[cfg(feature = "python")]
use pyo3::prelude::*;

#[cfg(feature = "python")]
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    bindings::text::register(m)?;
    bindings::sim::register(m)?;
    Ok(())
}
