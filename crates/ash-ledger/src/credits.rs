//! `Credits`: amounts of credit, whole numbers with checked arithmetic.

use std::fmt;

/// An amount of credits. Never negative; arithmetic is checked, never wrapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Credits(u64);

impl Credits {
    /// Nothing.
    pub const ZERO: Self = Self(0);
    /// The largest amount one entry may carry (10¹²); sums of many stay far from overflow.
    pub const MAX_ENTRY: Self = Self(1_000_000_000_000);

    /// `amount` credits.
    pub const fn new(amount: u64) -> Self {
        Self(amount)
    }

    /// The number of credits.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub const fn checked_add(self, other: Self) -> Option<Self> {
        match self.0.checked_add(other.0) {
            Some(sum) => Some(Self(sum)),
            None => None,
        }
    }

    /// `self − other`, or `None` if that would be negative.
    pub const fn checked_sub(self, other: Self) -> Option<Self> {
        match self.0.checked_sub(other.0) {
            Some(diff) => Some(Self(diff)),
            None => None,
        }
    }

    /// Half, rounded down (the seed's reject and timeout price).
    pub const fn half(self) -> Self {
        Self(self.0 / 2)
    }
}

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cr", self.0)
    }
}
