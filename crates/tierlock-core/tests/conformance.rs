//! The conformance battery on the memory provider, directly (the collapsed tiers) and through
//! the provider trait (a separate in-process tier escalating to it).

use std::sync::Arc;

use tierlock_core::{MemoryProvider, Provider};
use tierlock_testkit::CountingProvider;

mod direct {
    use super::*;
    tierlock_testkit::conformance_tests!(|| async {
        Arc::new(MemoryProvider::new()) as Arc<dyn Provider>
    });
}

mod through_the_trait {
    use super::*;
    tierlock_testkit::conformance_tests!(|| async {
        Arc::new(CountingProvider::new(MemoryProvider::new())) as Arc<dyn Provider>
    });
}
