// SPDX-License-Identifier: GPL-2.0

//! Ranges of virtual addresses as the migration and fault paths take them: checked once, where
//! they enter, instead of in every function they pass through.

use kernel::page::PAGE_SIZE;
use kernel::prelude::*;

/// A non-empty range `[start, end)` of page-aligned virtual addresses that does not wrap.
///
/// # Invariants
///
/// `start < end`, and both are multiples of [`PAGE_SIZE`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PageRange {
    start: usize,
    end: usize,
}

impl PageRange {
    /// `[start, end)`; `EINVAL` if it is empty or reversed or a bound is not page aligned.
    pub fn new(start: usize, end: usize) -> Result<Self> {
        if start >= end || start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        // INVARIANT: Checked just above.
        Ok(Self { start, end })
    }

    /// The `len` bytes from `start`; `EINVAL` if empty, not page aligned, or wrapping around
    /// the address space.
    pub fn with_len(start: usize, len: usize) -> Result<Self> {
        Self::new(start, start.checked_add(len).ok_or(EINVAL)?)
    }

    /// The `pages` pages from `start`; `EINVAL` as [`PageRange::with_len`].
    pub fn with_pages(start: usize, pages: usize) -> Result<Self> {
        Self::with_len(start, pages.checked_mul(PAGE_SIZE).ok_or(EINVAL)?)
    }

    /// First address.
    pub fn start(&self) -> usize {
        self.start
    }

    /// First address past the range.
    pub fn end(&self) -> usize {
        self.end
    }

    /// Size in bytes, never zero.
    pub fn size(&self) -> usize {
        self.end - self.start
    }

    /// Number of pages, never zero.
    pub fn pages(&self) -> usize {
        self.size() / PAGE_SIZE
    }
}

#[kunit_tests(drm_pagemap_range)]
mod tests {
    use super::*;

    #[test]
    fn only_aligned_non_empty_ranges() -> Result {
        let p = PAGE_SIZE;
        assert!(PageRange::new(p, 3 * p).is_ok());
        for (start, end) in [(p, p), (2 * p, p), (p + 1, 2 * p), (p, 2 * p - 1), (0, 1)] {
            assert_eq!(PageRange::new(start, end), Err(EINVAL));
        }
        assert_eq!(PageRange::with_len(p, 0), Err(EINVAL));
        assert_eq!(PageRange::with_len(usize::MAX & !(p - 1), p), Err(EINVAL));
        assert_eq!(PageRange::with_pages(p, usize::MAX / 2), Err(EINVAL));
        let r = PageRange::with_pages(p, 3)?;
        assert_eq!(
            (r.start(), r.end(), r.size(), r.pages()),
            (p, 4 * p, 3 * p, 3)
        );
        Ok(())
    }
}
