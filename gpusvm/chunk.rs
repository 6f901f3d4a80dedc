// SPDX-License-Identifier: GPL-2.0

//! Range sizing: a GPU fault creates a range of the largest allowed chunk size whose aligned
//! window around the fault fits every bound (VMA, notifier, GPU VA range) and overlaps no
//! existing range.
//!
//! C header: [`include/drm/drm_gpusvm.h`](srctree/include/drm/drm_gpusvm.h)

use core::ops::Range;

use kernel::page::PAGE_SIZE;
use kernel::prelude::*;

/// The chunk sizes a GPU SVM may create ranges with.
///
/// # Invariants
///
/// Strictly decreasing powers of two, the last one `PAGE_SIZE`, at most [`Self::MAX`] of them.
pub struct ChunkSizes {
    sizes: [usize; Self::MAX],
    len: usize,
}

impl ChunkSizes {
    /// Most chunk sizes one SVM can have.
    pub const MAX: usize = 8;

    /// Validates `sizes`: `EINVAL` unless strictly decreasing powers of two ending in
    /// `PAGE_SIZE` and at most [`Self::MAX`] of them.
    pub fn new(sizes: &[usize]) -> Result<Self> {
        if sizes.is_empty() || sizes.len() > Self::MAX || sizes[sizes.len() - 1] != PAGE_SIZE {
            return Err(EINVAL);
        }
        let mut out = [0; Self::MAX];
        for (i, &size) in sizes.iter().enumerate() {
            if !size.is_power_of_two() || (i > 0 && size >= sizes[i - 1]) {
                return Err(EINVAL);
            }
            out[i] = size;
        }
        // INVARIANT: Checked above.
        Ok(Self {
            sizes: out,
            len: sizes.len(),
        })
    }

    /// The sizes, largest first.
    pub fn as_slice(&self) -> &[usize] {
        &self.sizes[..self.len]
    }

    /// The window for a new range around `fault`: the first (largest) chunk size whose
    /// aligned window lies inside every one of `bounds` and, unless it is a single page, for
    /// which `usable(window)` holds (no existing range overlaps it, the pages are present...).
    /// `None` if not even a page fits, which means `fault` is outside some bound.
    pub fn window(
        &self,
        fault: usize,
        bounds: &[Range<usize>],
        mut usable: impl FnMut(&Range<usize>) -> bool,
    ) -> Option<Range<usize>> {
        for &size in self.as_slice() {
            let start = fault & !(size - 1);
            let Some(end) = start.checked_add(size) else {
                continue;
            };
            if !bounds.iter().all(|b| b.start <= start && end <= b.end) {
                continue;
            }
            let window = start..end;
            if size == PAGE_SIZE || usable(&window) {
                return Some(window);
            }
        }
        None
    }
}

#[kunit_tests(gpusvm_chunk)]
mod tests {
    use super::*;
    use kernel::sizes::SZ_2M;
    use kernel::sizes::SZ_4K;
    use kernel::sizes::SZ_64K;

    fn sizes() -> Result<ChunkSizes> {
        ChunkSizes::new(&[SZ_2M, SZ_64K, SZ_4K])
    }

    #[test]
    fn rejects_bad_size_lists() {
        assert_eq!(ChunkSizes::new(&[]).err(), Some(EINVAL));
        assert_eq!(ChunkSizes::new(&[SZ_2M, SZ_64K]).err(), Some(EINVAL));
        assert_eq!(ChunkSizes::new(&[SZ_64K, SZ_2M, SZ_4K]).err(), Some(EINVAL));
        assert_eq!(
            ChunkSizes::new(&[SZ_64K, SZ_64K, SZ_4K]).err(),
            Some(EINVAL)
        );
        assert_eq!(ChunkSizes::new(&[3 * SZ_4K, SZ_4K]).err(), Some(EINVAL));
        assert_eq!(ChunkSizes::new(&[SZ_4K; 9]).err(), Some(EINVAL));
        assert!(ChunkSizes::new(&[SZ_4K]).is_ok());
    }

    #[test]
    fn largest_window_that_fits() -> Result {
        let sizes = sizes()?;
        let vma = 0x4000_0000..0x4080_0000;
        let fault = 0x4023_4567;
        let w = sizes.window(fault, core::slice::from_ref(&vma), |_| true);
        assert_eq!(w, Some(0x4020_0000..0x4040_0000));

        // A VMA too small for 2 MiB around the fault falls back to 64 KiB.
        let small = 0x4023_0000..0x4025_0000;
        let w = sizes.window(fault, &[vma, small], |_| true);
        assert_eq!(w, Some(0x4023_0000..0x4024_0000));
        Ok(())
    }

    #[test]
    fn skips_windows_that_overlap() -> Result {
        let sizes = sizes()?;
        let vma = 0..0x1000_0000;
        let existing = 0x20_1000..0x20_2000;
        let fault = 0x23_0000;
        let mut asked = 0;
        let w = sizes.window(fault, core::slice::from_ref(&vma), |w| {
            asked += 1;
            !(w.start < existing.end && existing.start < w.end)
        });
        // 2 MiB overlaps the existing range, 64 KiB does not.
        assert_eq!(w, Some(0x23_0000..0x24_0000));
        assert_eq!(asked, 2);

        // A single page is never checked: it cannot split anything.
        let all = 0..0x1000_0000;
        let w =
            ChunkSizes::new(&[SZ_4K])?.window(0x20_1234, core::slice::from_ref(&all), |_| false);
        assert_eq!(w, Some(0x20_1000..0x20_2000));
        Ok(())
    }

    #[test]
    fn fault_outside_bounds() -> Result {
        let sizes = sizes()?;
        let bound = 0x2000..0x3000;
        assert_eq!(
            sizes.window(0x1000, core::slice::from_ref(&bound), |_| true),
            None
        );
        // Top of the address space: windows that would wrap are skipped.
        let top = usize::MAX & !(SZ_4K - 1);
        let bound = top..usize::MAX;
        let w = sizes.window(top + 5, core::slice::from_ref(&bound), |_| true);
        assert_eq!(w, None);
        Ok(())
    }
}
