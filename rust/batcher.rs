//! placeholder: filled by the batcher work
