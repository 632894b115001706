//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// A name (a namespace, a key prefix) no other test run uses.
pub fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("e2e-{tag}-{}-{nanos}", std::process::id())
}

/// `url` with the query parameter `param` (`key=value`) added.
pub fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}
