//! Test kit for tierlock providers.
#![deny(missing_docs)]
