//! tierlock facade.
#![deny(missing_docs)]
pub use tierlock_core::*;
