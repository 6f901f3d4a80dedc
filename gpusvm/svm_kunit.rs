// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the GPU SVM ([`crate::svm`], [`crate::pages`]) on the address space KUnit
//! gives the test's kthread, with a faux device (software DMA mask) standing in for the GPU.
//!
//! Device pages (the `Equal`/`Other`/`MixedDevice` scan results, mixed placements) need a
//! device-private pagemap: vgpu's KUnit tests build a whole GPU for that; these do not.

#[kernel::prelude::kunit_tests(gpusvm_svm)]
mod tests {
    use crate::svm::*;
    use kernel::prelude::*;

    use core::ops::Range as Span;

    use crate::notifier::Event;
    use crate::notifier::Invalidation;
    use crate::pages::Scan;
    use drm_pagemap::pagemap::Interconnect;
    use kernel::device::Bound;
    use kernel::device::Device;
    use kernel::faux;
    use kernel::mm::MmWithUser;
    use kernel::page::PAGE_SIZE;
    use kernel::sizes::SZ_1M;
    use kernel::sizes::SZ_2M;
    use kernel::sizes::SZ_4K;
    use kernel::sizes::SZ_4M;
    use kernel::sizes::SZ_64K;
    use kernel::str::CStr;
    use kernel::sync::aref::ARef;
    use kernel::sync::atomic::Atomic;
    use kernel::sync::atomic::Relaxed;
    use kernel::sync::Arc;
    use kernel::sync::Completion;
    use kernel::time::Delta;
    use kernel::uaccess::UserPtr;
    use kernel::uaccess::UserSlice;
    use kernel::workqueue::Work;
    use kernel::workqueue::WorkItem;

    /// `mmap(2)` flags (`include/uapi/asm-generic/mman-common.h`, x86's are the same).
    const PROT_READ: usize = 0x1;
    const PROT_WRITE: usize = 0x2;
    const MAP_PRIVATE: usize = 0x02;
    const MAP_ANONYMOUS: usize = 0x20;
    const MAP_FIXED_NOREPLACE: usize = 0x10_0000;

    /// The GPU VA window of most tests: all of user space.
    const ALL: Span<usize> = PAGE_SIZE..(1 << 47);
    const CHUNKS: [usize; 3] = [SZ_2M, SZ_64K, SZ_4K];
    /// The page budget of most tests: more than they use.
    const BUDGET: usize = 1 << 20;
    const P: usize = PAGE_SIZE;

    /// What the test driver saw, under the notifier lock.
    #[derive(Clone, Copy, Default)]
    struct Tally {
        unbinds: u32,
        /// Unbinds for an invalidation.
        invalidations: u32,
        /// Of which for an unmap.
        unmaps: u32,
        /// Unbinds for an invalidation that does not overlap the range.
        strays: u32,
    }

    impl Tally {
        /// Unbinds not for an invalidation (removal, collection, explicit requests).
        fn explicit(&self) -> u32 {
            self.unbinds - self.invalidations
        }
    }

    struct TestDriver {
        unbinds: Atomic<u32>,
    }

    impl Driver for TestDriver {
        type Locked = Tally;

        fn unbind(&self, locked: &mut Tally, range: &Range, inv: Option<&Invalidation<'_>>) {
            self.unbinds.fetch_add(1, Relaxed);
            locked.unbinds += 1;
            if let Some(inv) = inv {
                locked.invalidations += 1;
                if inv.event() == Event::Unmap {
                    locked.unmaps += 1;
                }
                if inv.end() <= range.start() || range.end() <= inv.start() {
                    locked.strays += 1;
                }
            }
        }
    }

    fn classes() -> LockClasses {
        LockClasses {
            outer: (c"gpusvm_kunit_outer", kernel::static_lock_class!()),
            inner: (c"gpusvm_kunit_inner", kernel::static_lock_class!()),
        }
    }

    /// Gives the test's kthread an address space if it has none yet.
    fn attach_mm() -> Result {
        if kernel::current!().mm().is_none() {
            let addr = crate::hmm::kunit_mmap_anon(P)?;
            munmap(addr, P)?;
        }
        Ok(())
    }

    /// A faux device that maps system memory directly (software DMA mask).
    fn faux_device(name: &'static CStr) -> Result<faux::Registration> {
        let faux = faux::Registration::new(name, None)?;
        let fdev: &faux::Device<Bound> = faux.as_ref();
        let dev: &Device<Bound> = fdev.as_ref();
        // SAFETY: The device is new and does no DMA: nothing maps for it yet.
        unsafe {
            drm_pagemap::copy::set_software_dma_mask(dev, kernel::dma::DmaMask::new::<64>())
        }?;
        Ok(faux)
    }

    fn test_driver() -> TestDriver {
        TestDriver {
            unbinds: Atomic::new(0),
        }
    }

    /// A GPU SVM over the test kthread's address space, for a faux device of its own.
    struct Env {
        // Dropped before the device its pages are mapped for.
        svm: Pin<KBox<Gpusvm<TestDriver>>>,
        _faux: faux::Registration,
    }

    impl Env {
        fn new(name: &'static CStr, va: Span<usize>, notifier_size: usize) -> Result<Self> {
            Self::with_budget(name, va, notifier_size, BUDGET)
        }

        fn with_budget(
            name: &'static CStr,
            va: Span<usize>,
            notifier_size: usize,
            max_pages: usize,
        ) -> Result<Self> {
            attach_mm()?;
            let faux = faux_device(name)?;
            let fdev: &faux::Device<Bound> = faux.as_ref();
            let dev: &Device<Bound> = fdev.as_ref();
            let task = kernel::current!();
            let mm = task.mm().ok_or(EINVAL)?;
            let svm = KBox::pin_init(
                Gpusvm::new(
                    mm,
                    dev,
                    Geometry {
                        va,
                        notifier_size,
                        chunks: &CHUNKS,
                        max_pages,
                    },
                    classes(),
                    test_driver(),
                    Tally::default(),
                )?,
                GFP_KERNEL,
            )?;
            Ok(Self { svm, _faux: faux })
        }
    }

    // Each helper below takes the lock it needs and drops it before returning: the tests
    // assert with no lock held.

    fn ctx(write: bool) -> Ctx {
        Ctx {
            write,
            devmem_only: false,
            allow_mixed: false,
            owner: None,
        }
    }

    fn fault(env: &Env, addr: usize, write: bool) -> Result<Found> {
        env.svm
            .lock()
            .find_or_insert(addr, 0..usize::MAX, &ctx(write))
    }

    /// The span of a new range created by a fault at `addr` (`EEXIST` if it found one).
    fn created(env: &Env, addr: usize) -> Result<Span<usize>> {
        let found = fault(env, addr, false)?;
        if found.created {
            Ok(found.range.span())
        } else {
            Err(EEXIST)
        }
    }

    /// [`Svm::get_pages`]: pages in system memory, in device memory, whether a pagemap was
    /// reported.
    fn get_pages(env: &Env, range: &Range, write: bool) -> Result<(usize, usize, bool)> {
        let placement = env.svm.lock().get_pages(range, &ctx(write))?;
        Ok((
            placement.system,
            placement.device,
            placement.pagemap.is_some(),
        ))
    }

    fn counts(env: &Env) -> (usize, usize) {
        env.svm.lock().counts()
    }

    fn collect(env: &Env) -> usize {
        env.svm.lock().collect_garbage()
    }

    fn valid(env: &Env, range: &Range) -> bool {
        env.svm.notifier_lock().pages_valid(range)
    }

    fn tally(env: &Env) -> Tally {
        let mut b = env.svm.notifier_lock();
        let tally = *b.driver();
        drop(b);
        tally
    }

    fn scan(env: &Env, range: &Range) -> Result<Scan> {
        env.svm.lock().scan(range, None, None)
    }

    /// The starts of the (at most 8) ranges overlapping `span`, and how many there are.
    fn ranges_in(env: &Env, span: Span<usize>) -> ([usize; 8], usize) {
        let mut starts = [0; 8];
        let mut n = 0;
        env.svm.lock().for_each_range(span, |r| {
            if n < starts.len() {
                starts[n] = r.start();
            }
            n += 1;
        });
        (starts, n)
    }

    /// How `range`'s pages are mapped, read under the notifier lock.
    struct Snapshot {
        valid: bool,
        /// Pages with a mapping, in system memory, writable.
        mapped: usize,
        system: usize,
        writable: usize,
        /// [`crate::pages::Pages::counts`].
        counts: (usize, usize),
        pagemap: bool,
        addrs: KVVec<u64>,
    }

    fn snapshot(env: &Env, range: &Range) -> Result<Snapshot> {
        // Allocated before the notifier lock.
        let mut addrs = KVVec::with_capacity(range.npages(), GFP_KERNEL)?;
        let (mut mapped, mut system, mut writable) = (0, 0, 0);
        let b = env.svm.notifier_lock();
        let valid = b.pages_valid(range);
        let mut counts = (0, 0);
        let mut pagemap = false;
        if let Some(pages) = b.pages(range) {
            counts = pages.counts();
            pagemap = pages.pagemap().is_some();
            for i in 0..range.npages() {
                let Some(a) = pages.get(i) else {
                    continue;
                };
                mapped += 1;
                if a.proto == Interconnect::System {
                    system += 1;
                }
                if a.writable {
                    writable += 1;
                }
                let _ = addrs.push_within_capacity(a.addr);
            }
        }
        drop(b);
        Ok(Snapshot {
            valid,
            mapped,
            system,
            writable,
            counts,
            pagemap,
            addrs,
        })
    }

    /// Copies page `index` of `range`, as the device reads it through its DMA mapping, into
    /// `out`: `ENOENT` if the pages are not mapped.
    fn read_dma(env: &Env, range: &Range, index: usize, out: &mut [u8]) -> Result {
        if out.len() != P {
            return Err(EINVAL);
        }
        let dev = env.svm.device();
        let b = env.svm.notifier_lock();
        let pages = b.pages(range).ok_or(ENOENT)?;
        let a = *pages.get(index).ok_or(ENOENT)?;
        if a.proto != Interconnect::System {
            return Err(EINVAL);
        }
        pages.sync_for_device(dev, index);
        let src = drm_pagemap::copy::system_ptr(dev, a.addr, P)?;
        // `src` is the kernel address of the page's live DMA mapping (the pages are valid and
        // stay so while the notifier lock is held), `P` bytes; `out` is a distinct buffer.
        // SAFETY: As above.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr(), P) };
        drop(b);
        Ok(())
    }

    /// Byte `j` of page `k` written with marker `m`.
    fn byte(m: u8, k: usize, j: usize) -> u8 {
        m.wrapping_add(k as u8) ^ (j as u8)
    }

    /// Whether `page` is page `k` as written with marker `m`.
    fn is_marked(page: &[u8], m: u8, k: usize) -> bool {
        page.iter().enumerate().all(|(j, b)| *b == byte(m, k, j))
    }

    /// Writes `pages` pages at `addr` from the CPU, page `k` with marker `m` (`k` counted
    /// from `first`).
    fn write_pages(addr: usize, first: usize, pages: usize, m: u8) -> Result {
        let mut buf = KVVec::from_elem(0u8, pages * P, GFP_KERNEL)?;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = byte(m, first + i / P, i % P);
        }
        UserSlice::new(UserPtr::from_addr(addr), buf.len())
            .writer()
            .write_slice(&buf)
    }

    /// Maps `len` bytes of private anonymous memory with `prot` at exactly `addr` (`EEXIST`
    /// rather than replacing a mapping).
    fn mmap_at(addr: usize, len: usize, prot: usize) -> Result<usize> {
        if kernel::current!().mm().is_none() {
            return Err(EINVAL);
        }
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | if addr != 0 { MAP_FIXED_NOREPLACE } else { 0 };
        // The test's kthread has an address space of its own (checked above); the mapping
        // replaces none (`MAP_FIXED_NOREPLACE`).
        let ret =
            // SAFETY: As above.
            unsafe { kernel::bindings::vm_mmap(core::ptr::null_mut(), addr, len, prot, flags, 0) };
        if ret > usize::MAX - 4095 {
            return Err(Error::from_errno(ret as isize as i32));
        }
        if addr != 0 && ret != addr {
            return Err(EEXIST);
        }
        Ok(ret)
    }

    fn munmap(addr: usize, len: usize) -> Result {
        // SAFETY: Unmaps part of the test kthread's own address space, which only the test
        // uses.
        kernel::error::to_result(unsafe { crate::ffi::vm_munmap(addr, len) })
    }

    /// A VMA of exactly `len` bytes of private anonymous memory (readable and writable),
    /// aligned to `align`, with unmapped pages on both sides (so that it merges with no other
    /// mapping).
    fn reserve(len: usize, align: usize) -> Result<usize> {
        let total = len + align + 2 * P;
        let raw = crate::hmm::kunit_mmap_anon(total)?;
        let base = (raw + P).next_multiple_of(align);
        munmap(raw, base - raw)?;
        munmap(base + len, raw + total - base - len)?;
        Ok(base)
    }

    /// The span of the VMA holding `addr`.
    fn vma_at(addr: usize) -> Option<Span<usize>> {
        let task = kernel::current!();
        let mm = task.mm()?;
        let mmap = mm.mmap_read_lock();
        let span = mmap.vma_lookup(addr).map(|v| v.start()..v.end());
        drop(mmap);
        span
    }

    /// Zaps `[addr, addr + len)` as `MADV_DONTNEED` does (inside one VMA): an invalidation
    /// that leaves the mapping.
    fn zap(addr: usize, len: usize) -> Result {
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let mmap = mm.mmap_read_lock();
        let vma = mmap.vma_lookup(addr).ok_or(EFAULT)?;
        if addr + len > vma.end() {
            return Err(EINVAL);
        }
        vma.zap_vma_range(addr, len);
        drop(mmap);
        Ok(())
    }

    /// A fault creates a range once; a second fault anywhere inside finds the same one;
    /// `counts` follows.
    #[test]
    fn ranges_are_found_and_counted() -> Result {
        let b = reserve(SZ_4M, SZ_2M)?;
        let env = Env::new(c"gpusvm_kunit_found", ALL, SZ_2M)?;
        assert_eq!(counts(&env), (0, 0));

        let f1 = fault(&env, b + 0x1234, true)?;
        assert!(f1.created && f1.writable && f1.collected == 0);
        assert_eq!(f1.range.span(), b..b + SZ_2M);
        assert_eq!(f1.range.npages(), SZ_2M / P);
        assert!(f1.range.devmem_possible() && !f1.range.is_unmapped());
        assert_eq!(counts(&env), (1, 0));

        let f2 = fault(&env, b + SZ_2M - P, false)?;
        assert!(!f2.created && f2.writable);
        assert!(Arc::ptr_eq(&f1.range, &f2.range));
        assert_eq!(counts(&env), (1, 0));

        let f3 = fault(&env, b + 3 * SZ_1M, false)?;
        assert!(f3.created);
        assert!(!Arc::ptr_eq(&f1.range, &f3.range));
        assert_eq!(f3.range.span(), b + SZ_2M..b + SZ_4M);
        assert_eq!(counts(&env), (2, 0));
        let f4 = fault(&env, b + SZ_2M, true)?;
        assert!(!f4.created && Arc::ptr_eq(&f3.range, &f4.range));

        let (starts, n) = ranges_in(&env, b..b + SZ_4M);
        assert_eq!(n, 2);
        assert_eq!((starts[0], starts[1]), (b, b + SZ_2M));
        let (starts, n) = ranges_in(&env, b + SZ_2M - 1..b + SZ_2M + 1);
        assert_eq!((n, starts[0], starts[1]), (2, b, b + SZ_2M));
        let (_, n) = ranges_in(&env, b + SZ_4M..b + SZ_4M + P);
        assert_eq!(n, 0);

        // Nothing was faulted in, nothing was unbound.
        assert_eq!(env.svm.driver().unbinds.load(Relaxed), 0);
        assert_eq!(counts(&env), (2, 0));
        Ok(())
    }

    /// Each `notifier_size` chunk of the address space has its notifier, retired with its
    /// last range: the last one retired stays as a spare (reused by the next fault in its
    /// chunk), the one before goes; a range no longer in the SVM reports `EFAULT`.
    #[test]
    fn one_notifier_per_chunk() -> Result {
        let cases: [(&'static CStr, usize, usize); 2] = [
            (c"gpusvm_kunit_notifier_2m", SZ_2M, 2),
            (c"gpusvm_kunit_notifier_4m", SZ_4M, 1),
        ];
        for (name, notifier_size, notifiers) in cases {
            let b = reserve(SZ_4M, SZ_4M)?;
            let env = Env::new(name, ALL, notifier_size)?;
            let r1 = fault(&env, b, true)?.range;
            let r2 = fault(&env, b + SZ_2M, true)?.range;
            // Ranges are chunk-sized whatever the notifier size.
            assert_eq!(r1.span(), b..b + SZ_2M);
            assert_eq!(r2.span(), b + SZ_2M..b + SZ_4M);
            assert_eq!(env.svm.lock().notifiers(), notifiers);
            assert_eq!(get_pages(&env, &r1, true)?, (SZ_2M / P, 0, false));
            assert_eq!(get_pages(&env, &r2, true)?, (SZ_2M / P, 0, false));

            munmap(b, SZ_2M)?;
            assert!(r1.is_unmapped() && !r2.is_unmapped());
            assert_eq!(counts(&env), (2, 1));
            assert_eq!(collect(&env), 1);
            assert_eq!(counts(&env), (1, 0));
            // The first chunk's notifier is the spare (2 MiB), or the shared one stays (4 MiB).
            assert_eq!(env.svm.lock().notifiers(), notifiers);
            assert_eq!(get_pages(&env, &r1, true).err(), Some(EFAULT));
            assert!(valid(&env, &r2));
            assert_eq!(get_pages(&env, &r2, true)?, (SZ_2M / P, 0, false));

            // The last range of a notifier retires it: the spare now (the first chunk's went).
            munmap(b + SZ_2M, P)?;
            assert!(r2.is_unmapped());
            assert_eq!(collect(&env), 1);
            assert_eq!(counts(&env), (0, 0));
            assert_eq!(env.svm.lock().notifiers(), 1);
            assert_eq!(get_pages(&env, &r2, true).err(), Some(EFAULT));
            assert_eq!(collect(&env), 0);
            // A fault at a hole leaves no notifier behind but the one spare.
            assert!(fault(&env, b, true).is_err());
            assert_eq!(env.svm.lock().notifiers(), 1);
            // The spare serves the next fault in its chunk (the hole's, now), which mirrors
            // the CPU's mapping as a fresh notifier would.
            mmap_at(b, SZ_2M, PROT_READ | PROT_WRITE)?;
            let r3 = fault(&env, b, true)?.range;
            assert_eq!(env.svm.lock().notifiers(), 1);
            assert_eq!(get_pages(&env, &r3, true)?, (SZ_2M / P, 0, false));
            munmap(b, P)?;
            assert!(r3.is_unmapped());
            assert_eq!(collect(&env), 1);
            assert_eq!(env.svm.lock().notifiers(), 1);
        }
        Ok(())
    }

    /// The largest chunk that fits the VMA: 2 MiB ranges in an aligned 4 MiB VMA, 4 KiB ones
    /// in a VMA of 3 pages at an odd place.
    #[test]
    fn chunks_fit_the_vma() -> Result {
        let b = reserve(SZ_4M, SZ_2M)?;
        let a = reserve(SZ_64K, SZ_64K)?;
        munmap(a, 5 * P)?;
        munmap(a + 8 * P, SZ_64K - 8 * P)?;
        let env = Env::new(c"gpusvm_kunit_vma_chunks", ALL, SZ_2M)?;
        assert_eq!(vma_at(b), Some(b..b + SZ_4M));
        assert_eq!(vma_at(a + 5 * P), Some(a + 5 * P..a + 8 * P));

        assert_eq!(created(&env, b + 5 * P)?, b..b + SZ_2M);
        assert_eq!(created(&env, b + SZ_2M + 7 * P)?, b + SZ_2M..b + SZ_4M);
        assert_eq!(created(&env, b + SZ_4M - P).err(), Some(EEXIST));

        assert_eq!(created(&env, a + 6 * P)?, a + 6 * P..a + 7 * P);
        assert_eq!(created(&env, a + 7 * P + 0x123)?, a + 7 * P..a + 8 * P);
        assert_eq!(created(&env, a + 5 * P + 0xfff)?, a + 5 * P..a + 6 * P);
        assert_eq!(counts(&env), (5, 0));
        Ok(())
    }

    /// A VMA across a notifier boundary (notifier_size 2 MiB): the ranges on either side stop
    /// at it.
    #[test]
    fn ranges_stay_inside_their_notifier() -> Result {
        let b = reserve(SZ_4M, SZ_2M)?;
        let edge = b + SZ_2M;
        munmap(b, SZ_2M - SZ_64K)?;
        munmap(edge + SZ_64K, SZ_2M - SZ_64K)?;
        let env = Env::new(c"gpusvm_kunit_notifier_edge", ALL, SZ_2M)?;
        assert_eq!(vma_at(edge), Some(edge - SZ_64K..edge + SZ_64K));

        assert_eq!(created(&env, edge - P)?, edge - SZ_64K..edge);
        assert_eq!(created(&env, edge)?, edge..edge + SZ_64K);
        let f = fault(&env, edge - SZ_64K, false)?;
        assert!(!f.created && f.range.span() == (edge - SZ_64K..edge));
        let (starts, n) = ranges_in(&env, edge - SZ_64K..edge + SZ_64K);
        assert_eq!((n, starts[0], starts[1]), (2, edge - SZ_64K, edge));
        Ok(())
    }

    /// Ranges stay inside the driver's GPU mapping around the fault (`gpuva`, which the fault
    /// address must be in); `remove_across` drops the one range a new mapping edge cuts.
    #[test]
    fn ranges_stay_inside_the_gpu_mapping() -> Result {
        let b = reserve(SZ_4M, SZ_4M)?;
        let env = Env::new(c"gpusvm_kunit_gpuva", ALL, SZ_4M)?;
        let within = |addr: usize, gpuva: Span<usize>| -> Result<Span<usize>> {
            Ok(env
                .svm
                .lock()
                .find_or_insert(addr, gpuva, &ctx(false))?
                .range
                .span())
        };
        let (mid, end) = (b + SZ_1M, b + SZ_4M);
        let c = mid + SZ_1M / 2;
        assert_eq!(within(c, mid..end)?, c..c + SZ_64K);
        assert_eq!(within(b + P, b..mid)?, b..b + SZ_64K);
        assert_eq!(within(b + SZ_2M, mid..end)?, b + SZ_2M..end);
        assert_eq!(within(b + P, mid..end).err(), Some(EINVAL));
        assert_eq!(counts(&env), (3, 0));
        // An edge at a range's start or end cuts nothing; inside one, it removes that range.
        assert_eq!(env.svm.lock().remove_across(b + SZ_2M), 0);
        assert_eq!(env.svm.lock().remove_across(b + SZ_64K), 0);
        assert_eq!(env.svm.lock().remove_across(b + 3 * SZ_1M), 1);
        assert_eq!(counts(&env), (2, 0));
        assert_eq!(ranges_in(&env, b + SZ_2M..end).1, 0);
        // The rest of the chunk faults again into a range inside the new mapping.
        assert_eq!(
            within(b + 3 * SZ_1M, b + 3 * SZ_1M..end)?,
            b + 3 * SZ_1M..b + 3 * SZ_1M + SZ_64K
        );
        Ok(())
    }

    /// A window that would overlap an existing range is skipped for the next size down:
    /// 64 KiB where the 2 MiB window holds a 4 KiB range, 4 KiB where the 64 KiB one does.
    #[test]
    fn chunks_avoid_existing_ranges() -> Result {
        let b = reserve(SZ_2M, SZ_2M)?;
        let p = b + 5 * P;
        // First a VMA of one page: its range is 4 KiB.
        munmap(b, p - b)?;
        munmap(p + P, b + SZ_2M - p - P)?;
        let env = Env::new(c"gpusvm_kunit_overlap", ALL, SZ_2M)?;
        let small = fault(&env, p, true)?;
        assert_eq!(small.range.span(), p..p + P);
        // Then the rest of the 2 MiB mapped around it: one VMA again.
        mmap_at(b, p - b, PROT_READ | PROT_WRITE)?;
        mmap_at(p + P, b + SZ_2M - p - P, PROT_READ | PROT_WRITE)?;
        assert_eq!(vma_at(b + SZ_1M), Some(b..b + SZ_2M));
        assert!(!small.range.is_unmapped());

        assert_eq!(
            created(&env, b + SZ_1M + 0x42)?,
            b + SZ_1M..b + SZ_1M + SZ_64K
        );
        assert_eq!(created(&env, b + 15 * P)?, b + 15 * P..b + 16 * P);
        assert_eq!(created(&env, b)?, b..b + P);
        assert_eq!(created(&env, b + SZ_64K)?, b + SZ_64K..b + 2 * SZ_64K);
        let again = fault(&env, p + 0x10, false)?;
        assert!(!again.created && Arc::ptr_eq(&again.range, &small.range));
        assert_eq!(counts(&env), (5, 0));
        Ok(())
    }

    /// `EPERM` for a write fault on a read-only mapping, `EFAULT` where nothing is mapped,
    /// `EINVAL` outside the GPU VA window (which also bounds the ranges).
    #[test]
    fn fault_errors() -> Result {
        let a = reserve(SZ_64K, SZ_64K)?;
        let ro = mmap_at(0, SZ_64K, PROT_READ)?;
        let env = Env::new(c"gpusvm_kunit_errors", ALL, SZ_2M)?;

        assert_eq!(fault(&env, ro, true).err(), Some(EPERM));
        let f = fault(&env, ro, false)?;
        assert!(f.created && !f.writable);
        let n = f.range.npages();
        // Read: the zero page, read-only.
        assert_eq!(get_pages(&env, &f.range, false)?, (n, 0, false));
        let s = snapshot(&env, &f.range)?;
        assert!(s.valid && s.mapped == n && s.system == n && s.writable == 0);
        assert_eq!(get_pages(&env, &f.range, true).err(), Some(EPERM));
        assert_eq!(counts(&env), (1, 0));

        munmap(a + 5 * P, P)?;
        assert_eq!(fault(&env, a + 5 * P, false).err(), Some(EFAULT));
        assert_eq!(fault(&env, a + 5 * P + 8, true).err(), Some(EFAULT));
        assert_eq!(counts(&env), (1, 0));
        drop(env);

        // A window of 1 MiB inside a 4 MiB VMA.
        let b = reserve(SZ_4M, SZ_2M)?;
        let env = Env::new(c"gpusvm_kunit_window", b..b + SZ_1M, SZ_2M)?;
        assert_eq!(fault(&env, b - P, false).err(), Some(EINVAL));
        assert_eq!(fault(&env, b + SZ_1M, false).err(), Some(EINVAL));
        assert_eq!(fault(&env, b + 3 * SZ_1M, true).err(), Some(EINVAL));
        assert_eq!(created(&env, b + P)?, b..b + SZ_64K);
        assert_eq!(created(&env, b + SZ_1M - 1)?, b + SZ_1M - SZ_64K..b + SZ_1M);
        assert_eq!(counts(&env), (2, 0));
        Ok(())
    }

    /// `Gpusvm::new` refuses bad sizes and windows.
    #[test]
    fn new_rejects_bad_arguments() -> Result {
        attach_mm()?;
        let faux = faux_device(c"gpusvm_kunit_new")?;
        let fdev: &faux::Device<Bound> = faux.as_ref();
        let dev: &Device<Bound> = fdev.as_ref();
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let new = |va: Span<usize>, notifier_size: usize, chunks: &[usize], max_pages: usize| {
            Gpusvm::new(
                mm,
                dev,
                Geometry {
                    va,
                    notifier_size,
                    chunks,
                    max_pages,
                },
                classes(),
                test_driver(),
                Tally::default(),
            )
            .err()
        };
        assert_eq!(new(ALL, SZ_2M, &CHUNKS, BUDGET), None);
        assert_eq!(new(ALL, SZ_64K, &[SZ_64K, SZ_4K], BUDGET), None);
        // Not a power of two; smaller than the largest chunk.
        assert_eq!(new(ALL, 3 * SZ_1M, &CHUNKS, BUDGET), Some(EINVAL));
        assert_eq!(new(ALL, SZ_64K, &CHUNKS, BUDGET), Some(EINVAL));
        // Empty, reversed or unaligned windows.
        assert_eq!(new(P..P, SZ_2M, &CHUNKS, BUDGET), Some(EINVAL));
        let reversed = Span {
            start: SZ_2M,
            end: P,
        };
        assert_eq!(new(reversed, SZ_2M, &CHUNKS, BUDGET), Some(EINVAL));
        assert_eq!(new(P + 1..SZ_2M, SZ_2M, &CHUNKS, BUDGET), Some(EINVAL));
        assert_eq!(new(P..SZ_2M - 1, SZ_2M, &CHUNKS, BUDGET), Some(EINVAL));
        // A budget smaller than the largest chunk.
        assert_eq!(new(ALL, SZ_2M, &CHUNKS, SZ_2M / P), None);
        assert_eq!(new(ALL, SZ_2M, &CHUNKS, SZ_2M / P - 1), Some(EINVAL));
        // Bad chunk lists.
        assert_eq!(new(ALL, SZ_2M, &[SZ_2M, SZ_64K], BUDGET), Some(EINVAL));
        assert_eq!(
            new(ALL, SZ_2M, &[SZ_64K, SZ_2M, SZ_4K], BUDGET),
            Some(EINVAL)
        );
        Ok(())
    }

    /// `get_pages` maps every page of anonymous memory for the device, writable, reaching
    /// what the CPU wrote; a second call with the pages still valid changes nothing.
    #[test]
    fn get_pages_maps_every_page() -> Result {
        const N: usize = SZ_64K / PAGE_SIZE;
        let a = reserve(SZ_64K, SZ_64K)?;
        let b = reserve(SZ_2M, SZ_2M)?;
        let env = Env::new(c"gpusvm_kunit_get_pages", ALL, SZ_2M)?;
        let r = fault(&env, a, true)?.range;
        assert_eq!(r.span(), a..a + SZ_64K);
        assert!(!valid(&env, &r));
        write_pages(a, 0, N / 2, 0x40)?;

        assert_eq!(get_pages(&env, &r, true)?, (N, 0, false));
        let s = snapshot(&env, &r)?;
        assert!(s.valid);
        assert_eq!((s.mapped, s.system, s.writable), (N, N, N));
        assert_eq!(s.counts, (N, 0));
        assert!(!s.pagemap);
        for (i, x) in s.addrs.iter().enumerate() {
            assert!(s.addrs[i + 1..].iter().all(|y| y != x));
        }
        // The device reads what the CPU wrote, and zeroes in the rest.
        let mut page = KVVec::from_elem(0u8, P, GFP_KERNEL)?;
        for k in 0..N {
            read_dma(&env, &r, k, &mut page)?;
            if k < N / 2 {
                assert!(is_marked(&page, 0x40, k));
            } else {
                assert!(page.iter().all(|b| *b == 0));
            }
        }

        // Valid already: the same mappings, nothing unbound.
        let unbinds = tally(&env).unbinds;
        assert_eq!(get_pages(&env, &r, true)?, (N, 0, false));
        assert_eq!(get_pages(&env, &r, false)?, (N, 0, false));
        let again = snapshot(&env, &r)?;
        assert!(again.valid && again.addrs[..] == s.addrs[..]);
        assert_eq!(tally(&env).unbinds, unbinds);

        // A 2 MiB range (a THP or 512 pages) in one call.
        let big = fault(&env, b + 0x5000, true)?.range;
        assert_eq!(big.span(), b..b + SZ_2M);
        write_pages(b + 300 * P, 300, 1, 0x77)?;
        assert_eq!(get_pages(&env, &big, true)?, (SZ_2M / P, 0, false));
        let s = snapshot(&env, &big)?;
        assert!(s.valid && s.mapped == SZ_2M / P && s.system == SZ_2M / P);
        assert_eq!(s.writable, SZ_2M / P);
        read_dma(&env, &big, 300, &mut page)?;
        assert!(is_marked(&page, 0x77, 300));
        read_dma(&env, &big, 511, &mut page)?;
        assert!(page.iter().all(|b| *b == 0));
        assert_eq!(tally(&env).strays, 0);
        Ok(())
    }

    /// Every kind of invalidation unmaps the pages (and unbinds first) without destroying the
    /// range: a CPU write replacing the zero page, a zap (`MADV_DONTNEED`), an explicit
    /// `invalidate`, `unmap_pages`; `remove` destroys it. The next `get_pages` maps the
    /// current pages.
    #[test]
    fn invalidations_unmap_pages() -> Result {
        const N: usize = SZ_64K / PAGE_SIZE;
        let a = reserve(SZ_64K, SZ_64K)?;
        let env = Env::new(c"gpusvm_kunit_invalidate", ALL, SZ_2M)?;
        let r = fault(&env, a, false)?.range;
        let mut page = KVVec::from_elem(0u8, P, GFP_KERNEL)?;

        // Read-faulted untouched memory: the zero page, read-only.
        assert_eq!(get_pages(&env, &r, false)?, (N, 0, false));
        let s = snapshot(&env, &r)?;
        assert!(s.valid && s.mapped == N && s.writable == 0);
        let t0 = tally(&env);

        // The CPU writes page 3: the zero page there is replaced.
        write_pages(a + 3 * P, 3, 1, 0x33)?;
        let t1 = tally(&env);
        assert!(!valid(&env, &r));
        assert!(t1.invalidations > t0.invalidations && t1.unbinds > t0.unbinds);
        assert_eq!(t1.unmaps, t0.unmaps);
        assert!(!r.is_unmapped());
        assert_eq!(counts(&env), (1, 0));
        assert_eq!(get_pages(&env, &r, false)?, (N, 0, false));
        read_dma(&env, &r, 3, &mut page)?;
        assert!(is_marked(&page, 0x33, 3));

        // Writable now: the zero pages are replaced, all of them writable.
        assert_eq!(get_pages(&env, &r, true)?, (N, 0, false));
        let s = snapshot(&env, &r)?;
        assert!(s.valid && s.writable == N);

        // A zap: the pages go (the next ones are zero-filled), the mapping stays.
        zap(a, SZ_64K)?;
        let t2 = tally(&env);
        assert!(!valid(&env, &r));
        assert!(t2.invalidations > t1.invalidations);
        assert!(!r.is_unmapped());
        assert_eq!(get_pages(&env, &r, true)?, (N, 0, false));
        read_dma(&env, &r, 3, &mut page)?;
        assert!(page.iter().all(|b| *b == 0));

        // Unbound and unmapped on request, from the outer lock and from the notifier lock.
        // (Unbinds not for an invalidation are counted: the core mm may invalidate at will.)
        env.svm.lock().invalidate(a + 5 * P..a + 6 * P);
        let t3 = tally(&env);
        assert!(!valid(&env, &r));
        assert_eq!(t3.explicit(), t2.explicit() + 1);
        assert_eq!(get_pages(&env, &r, true)?, (N, 0, false));
        // A span next to the range's touches nothing.
        env.svm.lock().invalidate(a + SZ_64K..a + 2 * SZ_64K);
        assert!(valid(&env, &r));
        assert_eq!(tally(&env).explicit(), t3.explicit());
        env.svm.notifier_lock().unmap_pages(&r);
        assert!(!valid(&env, &r));
        assert_eq!(tally(&env).explicit(), t3.explicit() + 1);
        assert_eq!(get_pages(&env, &r, true)?, (N, 0, false));
        assert!(valid(&env, &r));

        // Removed: unbound, gone; the next fault creates another.
        env.svm.lock().remove(&r);
        assert_eq!(tally(&env).explicit(), t3.explicit() + 2);
        assert_eq!(counts(&env), (0, 0));
        assert!(!valid(&env, &r));
        let f = fault(&env, a + P, true)?;
        assert!(f.created && !Arc::ptr_eq(&f.range, &r));
        // Removing it twice (or a stale range) does nothing.
        env.svm.lock().remove(&r);
        assert_eq!(counts(&env), (1, 0));
        assert_eq!(tally(&env).strays, 0);
        Ok(())
    }

    /// An munmap of one page in the middle of a 2 MiB range marks it for the collector, which
    /// destroys it; new faults there make smaller ranges around the hole. A fault inside a
    /// range marked so collects it first.
    #[test]
    fn garbage_collection_after_partial_munmap() -> Result {
        let b = reserve(SZ_4M, SZ_2M)?;
        let hole = b + SZ_1M;
        let env = Env::new(c"gpusvm_kunit_garbage", ALL, SZ_2M)?;
        let r = fault(&env, b + P, true)?.range;
        assert_eq!(r.span(), b..b + SZ_2M);
        assert_eq!(get_pages(&env, &r, true)?, (SZ_2M / P, 0, false));
        let t0 = tally(&env);

        munmap(hole, P)?;
        let t1 = tally(&env);
        assert!(r.is_unmapped());
        assert!(!valid(&env, &r));
        assert_eq!(counts(&env), (1, 1));
        assert!(t1.unmaps > t0.unmaps && t1.strays == 0);
        assert!(get_pages(&env, &r, true).is_err());
        assert_eq!(counts(&env), (1, 1));

        assert_eq!(collect(&env), 1);
        assert_eq!(counts(&env), (0, 0));
        assert_eq!(tally(&env).explicit(), t1.explicit() + 1);
        assert_eq!(collect(&env), 0);

        // Smaller ranges now, none over the hole.
        assert_eq!(created(&env, b + P)?, b..b + SZ_64K);
        assert_eq!(created(&env, hole - P)?, hole - SZ_64K..hole);
        assert_eq!(created(&env, hole + P)?, hole + P..hole + 2 * P);
        assert_eq!(
            created(&env, hole + SZ_64K)?,
            hole + SZ_64K..hole + 2 * SZ_64K
        );
        assert_eq!(fault(&env, hole, true).err(), Some(EFAULT));
        assert_eq!(created(&env, b + SZ_2M)?, b + SZ_2M..b + SZ_4M);
        assert_eq!(counts(&env), (5, 0));
        let near = fault(&env, hole + P, true)?.range;
        assert_eq!(get_pages(&env, &near, true)?, (1, 0, false));
        let (_, n) = ranges_in(&env, hole..hole + P);
        assert_eq!(n, 0);

        // A page of the first 64 KiB goes: a fault in the rest of it collects it first.
        let first = fault(&env, b, true)?.range;
        munmap(b + 5 * P, P)?;
        assert!(first.is_unmapped());
        assert_eq!(counts(&env), (5, 1));
        let f = fault(&env, b + 8 * P, true)?;
        assert!(f.created && f.collected == 1);
        assert_eq!(f.range.span(), b + 8 * P..b + 9 * P);
        assert_eq!(counts(&env), (5, 0));
        assert_eq!(get_pages(&env, &f.range, true)?, (1, 0, false));
        Ok(())
    }

    /// Past the page budget, a fault drops every other range first (a cache), unbinding them.
    #[test]
    fn page_budget_drops_other_ranges() -> Result {
        let b = reserve(SZ_4M, SZ_2M)?;
        let a = reserve(2 * SZ_64K, SZ_64K)?;
        let env = Env::with_budget(c"gpusvm_kunit_budget", ALL, SZ_2M, (SZ_2M + SZ_64K) / P)?;
        let big = fault(&env, b + P, true)?.range;
        assert_eq!(big.span(), b..b + SZ_2M);
        assert_eq!(get_pages(&env, &big, true)?, (SZ_2M / P, 0, false));
        // Within budget.
        let s1 = fault(&env, a, true)?.range;
        assert_eq!(s1.span(), a..a + SZ_64K);
        assert_eq!(get_pages(&env, &s1, true)?, (SZ_64K / P, 0, false));
        assert_eq!(counts(&env), (2, 0));
        assert!(valid(&env, &big) && valid(&env, &s1));
        let t0 = tally(&env);

        // Over it: the other two go.
        let s2 = fault(&env, a + SZ_64K, true)?;
        assert!(s2.created && s2.range.span() == (a + SZ_64K..a + 2 * SZ_64K));
        assert_eq!(counts(&env), (1, 0));
        assert_eq!(tally(&env).explicit(), t0.explicit() + 2);
        assert!(!valid(&env, &big) && !valid(&env, &s1));
        assert!(get_pages(&env, &big, true).is_err());
        assert!(get_pages(&env, &s1, true).is_err());
        assert_eq!(get_pages(&env, &s2.range, true)?, (SZ_64K / P, 0, false));

        // What went faults again into a new range.
        let again = fault(&env, b + P, true)?;
        assert!(again.created && !Arc::ptr_eq(&again.range, &big));
        assert_eq!(counts(&env), (2, 0));
        assert_eq!(get_pages(&env, &again.range, true)?, (SZ_2M / P, 0, false));
        assert!(valid(&env, &s2.range));
        Ok(())
    }

    /// Unmapped and mapped again: the old range refuses the new pages (`EFAULT`), and the
    /// range the next fault creates maps them.
    #[test]
    fn munmap_and_remap_gives_fresh_pages() -> Result {
        const N: usize = SZ_64K / PAGE_SIZE;
        let a = reserve(SZ_64K, SZ_64K)?;
        let env = Env::new(c"gpusvm_kunit_remap", ALL, SZ_2M)?;
        write_pages(a, 0, N, 0x11)?;
        let r = fault(&env, a, true)?.range;
        assert_eq!(get_pages(&env, &r, true)?, (N, 0, false));
        let mut page = KVVec::from_elem(0u8, P, GFP_KERNEL)?;
        read_dma(&env, &r, 5, &mut page)?;
        assert!(is_marked(&page, 0x11, 5));

        munmap(a, SZ_64K)?;
        mmap_at(a, SZ_64K, PROT_READ | PROT_WRITE)?;
        write_pages(a, 0, N, 0x22)?;
        assert!(r.is_unmapped());
        // Every page is mapped again, but not for this range.
        assert_eq!(get_pages(&env, &r, true).err(), Some(EFAULT));
        assert!(!valid(&env, &r));

        assert_eq!(collect(&env), 1);
        let f = fault(&env, a, true)?;
        assert!(f.created && !Arc::ptr_eq(&f.range, &r));
        assert_eq!(f.range.span(), a..a + SZ_64K);
        assert_eq!(get_pages(&env, &f.range, true)?, (N, 0, false));
        for k in [0, 5, N - 1] {
            read_dma(&env, &f.range, k, &mut page)?;
            assert!(is_marked(&page, 0x22, k));
        }
        Ok(())
    }

    /// Zaps [`Zapper::start`]'s 64 KiB [`ZAPS`] times from a workqueue, as `MADV_DONTNEED`
    /// would, racing the test's `get_pages`. (A work item of the test's own:
    /// `Queue::try_spawn` from two modules trips a lockdep warning, its lock class name
    /// being a literal of each caller's copy of the generic function.)
    #[pin_data]
    struct Zapper {
        #[pin]
        work: Work<Zapper>,
        #[pin]
        done: Completion,
        zaps: Atomic<u32>,
        mm: ARef<MmWithUser>,
        start: usize,
    }

    const ZAPS: u32 = 200;

    kernel::impl_has_work! {
        impl HasWork<Self> for Zapper { self.work }
    }

    impl WorkItem for Zapper {
        type Pointer = Arc<Zapper>;

        fn run(this: Arc<Zapper>) {
            for _ in 0..ZAPS {
                let mmap = this.mm.mmap_read_lock();
                if let Some(vma) = mmap.vma_lookup(this.start) {
                    if vma.end() >= this.start + SZ_64K {
                        vma.zap_vma_range(this.start, SZ_64K);
                    }
                }
                drop(mmap);
                this.zaps.fetch_add(1, Relaxed);
                kernel::time::delay::fsleep(Delta::from_micros(200));
            }
            this.done.complete_all();
        }
    }

    /// `get_pages` racing zaps of its range from another thread: each call either maps the
    /// whole range or gives up with `EBUSY`, the driver is told of every invalidation, and
    /// once the zaps stop the pages map and stay valid.
    #[test]
    fn get_pages_races_invalidations() -> Result {
        const N: usize = SZ_64K / PAGE_SIZE;
        let a = reserve(SZ_64K, SZ_64K)?;
        let env = Env::new(c"gpusvm_kunit_race", ALL, SZ_2M)?;
        let r = fault(&env, a, true)?.range;
        let mm = {
            let task = kernel::current!();
            let mm = task.mm().ok_or(EINVAL)?;
            mm.mmget_not_zero().ok_or(EFAULT)?
        };
        let z = Arc::pin_init(
            try_pin_init!(Zapper {
                work <- kernel::new_work!("gpusvm_kunit::Zapper"),
                done <- Completion::new(),
                zaps: Atomic::new(0),
                mm,
                start: a,
            }),
            GFP_KERNEL,
        )?;
        if kernel::workqueue::system_unbound()
            .enqueue(z.clone())
            .is_err()
        {
            return Err(EBUSY);
        }

        let (mut ok, mut busy, mut wrong) = (0u32, 0u32, 0u32);
        let mut other = None;
        for _ in 0..100_000 {
            match get_pages(&env, &r, true) {
                Ok(p) if p == (N, 0, false) => ok += 1,
                Ok(_) => wrong += 1,
                Err(e) if e == EBUSY => busy += 1,
                Err(e) => other = Some(e),
            }
            if other.is_some() || z.zaps.load(Relaxed) >= ZAPS {
                break;
            }
        }
        z.done.wait_for_completion();
        let t = tally(&env);
        kernel::pr_info!(
            "gpusvm_svm: {} get_pages ok, {} busy, {} invalidations\n",
            ok,
            busy,
            t.invalidations
        );
        assert_eq!(other, None);
        assert_eq!(wrong, 0);
        assert!(ok > 0);
        assert!(t.invalidations > 0 && t.strays == 0 && t.unmaps == 0);

        // Quiet again: mapped and valid, and stays so.
        assert_eq!(get_pages(&env, &r, true)?, (N, 0, false));
        assert!(valid(&env, &r));
        assert!(!r.is_unmapped());
        assert_eq!(counts(&env), (1, 0));
        Ok(())
    }

    /// `scan` in system memory: `Unpopulated` before any page is there, `Mixed` with some,
    /// `System` with all (the zero page included); it faults nothing in.
    #[test]
    fn scan_classifies_system_pages() -> Result {
        const N: usize = SZ_64K / PAGE_SIZE;
        let a = reserve(SZ_64K, SZ_64K)?;
        let z = reserve(SZ_64K, SZ_64K)?;
        let env = Env::new(c"gpusvm_kunit_scan", ALL, SZ_2M)?;
        let r = fault(&env, a, true)?.range;
        assert_eq!(scan(&env, &r)?, Scan::Unpopulated);
        assert_eq!(scan(&env, &r)?, Scan::Unpopulated);
        write_pages(a, 0, N / 2, 1)?;
        assert_eq!(scan(&env, &r)?, Scan::Mixed);
        // A write fault (get_pages) populates the rest.
        assert_eq!(get_pages(&env, &r, true)?, (N, 0, false));
        assert_eq!(scan(&env, &r)?, Scan::System);
        zap(a, SZ_64K)?;
        assert_eq!(scan(&env, &r)?, Scan::Unpopulated);

        let zr = fault(&env, z, false)?.range;
        assert_eq!(scan(&env, &zr)?, Scan::Unpopulated);
        assert_eq!(get_pages(&env, &zr, false)?, (N, 0, false));
        assert_eq!(scan(&env, &zr)?, Scan::System);
        Ok(())
    }
}
