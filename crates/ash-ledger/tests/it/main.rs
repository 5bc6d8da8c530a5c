//! Integration tests of ash-ledger: the attack list, property tests over random histories,
//! hostile bytes, bundles, checkpoints and incremental verification.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod attacks;
mod format;
mod props;
mod world;
