// SPDX-License-Identifier: GPL-2.0
/*
 * vgpu_fuzz: several processes issuing random sequences of every vgpu ioctl, valid and
 * invalid, with arguments biased to the edges (0, page - 1, page + 1, huge, start + size
 * overflowing, kernel addresses, unaligned, ids that do not exist), over a few mappings
 * that they munmap, mprotect, mremap and madvise(DONTNEED) meanwhile, while they fork
 * short-lived children and exit at random (the supervisor starts new ones). Any errno is
 * accepted; what is not: a splat (the runner reads the kernel log), a call that does not
 * return (this program names a call stuck for STUCK_S seconds; the runner's deadline
 * collects the kernel stacks), SIGBUS on a CPU access to our own memory, and device memory
 * still allocated once every process is gone.
 *
 * Seeded and reproducible per process (interleavings aside): VGPU_FUZZ_SEED=N or -s N;
 * the seed is printed. VGPU_FUZZ_SECONDS (default 20) is how long it runs.
 * VGPU_FUZZ_TRACE=1 writes every operation into the kernel log (and so to the serial
 * console), to see what led to a crash; boot with printk.devkmsg=on, or the kernel keeps
 * only a few lines every 5 s.
 * VGPU_FUZZ_AVOID_ISSUE7=1,2,5 avoids the call shapes of these known bugs of issue 7 until
 * their fixes land: 1, a GPU write over a mapping that may hold read-only or copy-on-write
 * pages (made a read instead); 2, a timeslice above 5 ms; 5, EVICT (7.3's
 * migrate_device_pfns() does not pin the anon_vmas of the pages it unmaps: a process exiting
 * meanwhile frees one under migrate_device_finalize, KASAN, seed 777; README).
 * `vgpu_fuzz --hang-on-purpose` hangs in the kernel (the item-1 shape, else a pipe read):
 * the runner's own deadline check (vm-init.sh, mode deadline).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "igt.h"
#include "vgpu_util.h"

#define WORKERS 4
#define MAPS 4
#define MAX_VMS 6
#define SCRATCH (4 * MIB)
#define STUCK_S 15
#define SLOTS (WORKERS * 2)	/* a worker and its forked child */

struct slot {
	volatile pid_t pid;
	volatile unsigned int seed;
	volatile long op;
	volatile long long since_ms;	/* when the current op started, 0 between ops */
	volatile int reported;
	char desc[200];
};

struct shared {
	volatile long ops;
	volatile int stop;
	volatile int failures;
	char why[4][240];
	struct slot slot[SLOTS];
};

struct map {
	uint8_t *p;
	size_t len;
	int rw;		/* the whole mapping is PROT_READ | PROT_WRITE */
	int ro_or_cow;	/* may hold read-only or copy-on-write pages (issue 7 item 1 shape) */
};

static struct shared *sh;
static char node[2][64];
static int seconds = 20;
static unsigned int seed;
static int avoid[8];		/* avoid[n]: avoid the shape of issue 7 item n */
static char avoid_list[32];
static int trace_fd = -1;
/* VGPU_FUZZ_SKIP=letters: operation classes left out, to narrow a finding down: g migrate,
 * a VM access, v VM create/destroy, q query/stats/evict/other ioctls, c CPU access,
 * m munmap/mprotect/mremap/madvise, f fork, o close/reopen, x exit. */
static char skip[16];	/* VGPU_FUZZ_TRACE=1: every operation into the kernel log */
/* VGPU_FUZZ_NO_THP=1: every mapping MADV_NOHUGEPAGE, so no huge device folio forms. */
static int no_thp;

/* Per process. */
static uint64_t rng;
static struct map maps[MAPS];
static int gfd[2] = { -1, -1 };
static uint32_t vms[2][MAX_VMS];
static int nvms[2];
static uint8_t *scratch;
static struct slot *me;
static sigjmp_buf on_signal;
static volatile sig_atomic_t in_cpu_access;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static unsigned int rnd(unsigned int n)
{
	return (unsigned int)(next() % n);
}

static void reseed(unsigned int s)
{
	rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)s << 1) ^ ((uint64_t)s << 33);
	if (!rng)
		rng = 1;
	for (int i = 0; i < 8; i++)
		next();
}

static void failure(const char *fmt, ...)
{
	int n = __atomic_fetch_add(&sh->failures, 1, __ATOMIC_RELAXED);
	va_list ap;

	if (n >= 4)
		return;
	va_start(ap, fmt);
	vsnprintf(sh->why[n], sizeof(sh->why[n]), fmt, ap);
	va_end(ap);
}

/* Records what this process is about to do, for the supervisor's stuck-call report. */
static void doing(const char *fmt, ...)
{
	va_list ap;

	me->op++;
	va_start(ap, fmt);
	vsnprintf(me->desc, sizeof(me->desc), fmt, ap);
	va_end(ap);
	if (trace_fd >= 0)
		dprintf(trace_fd, "<4>vgpu_fuzz[%d] op %ld: %s\n", getpid(), me->op, me->desc);
	__atomic_store_n(&me->since_ms, now_ms(), __ATOMIC_RELEASE);
}

static void done(void)
{
	__atomic_store_n(&me->since_ms, 0, __ATOMIC_RELEASE);
	__atomic_fetch_add(&sh->ops, 1, __ATOMIC_RELAXED);
}

/* Argument generators, biased to the edges. */

static struct map *any_map(void)
{
	return &maps[rnd(MAPS)];
}

static uint64_t edge_start(void)
{
	struct map *m = any_map();
	uint64_t base = (uintptr_t)m->p;

	/* No usable mapping (a failed new_map() leaves p and len 0): the scratch page. */
	if (!m->p || m->len < PAGE)
		return (uintptr_t)scratch;
	switch (rnd(16)) {
	case 0: return 0;
	case 1: return PAGE;
	case 2: return base + 1;
	case 3: return base + m->len;
	case 4: return base + m->len - PAGE;
	case 5: return 0xffff888000000000ULL;	/* the direct map */
	case 6: return 0xffffffff81000000ULL;	/* kernel text */
	case 7: return (1ULL << 47) - PAGE;
	case 8: return ~0ULL - PAGE + 1;
	case 9: return (uintptr_t)scratch;
	case 10: return base + (next() % m->len);	/* unaligned, inside */
	default: return base + (uint64_t)rnd((unsigned int)(m->len / PAGE)) * PAGE;
	}
}

static uint64_t edge_size(uint64_t start)
{
	switch (rnd(16)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return PAGE - 1;
	case 3: return PAGE + 1;
	case 4: return 2 * MIB;
	case 5: return 2 * MIB + PAGE;
	case 6: return 1ULL << 40;
	case 7: return ~0ULL - PAGE + 1;		/* start + size overflows */
	case 8: return -(start & ~(PAGE - 1));	/* ends exactly at 2^64 */
	case 9: return 64 * MIB;
	default: return (1 + (uint64_t)rnd(256)) * PAGE;
	}
}

/* Issue 7 item 3 is about sizes like these; the call must still return promptly. */

static int overlaps_ro_or_cow(uint64_t start, uint64_t size)
{
	for (int i = 0; i < MAPS; i++) {
		uint64_t b = (uintptr_t)maps[i].p, e = b + maps[i].len;

		if ((maps[i].ro_or_cow || !maps[i].rw) && start < e && start + size > b)
			return 1;
	}
	return 0;
}

static uint64_t edge_ptr(void)
{
	switch (rnd(8)) {
	case 0: return 0;
	case 1: return 0xffff888000000000ULL;
	case 2: return (uintptr_t)scratch + 1;
	case 3: return (uintptr_t)any_map()->p;
	default: return (uintptr_t)scratch;
	}
}

static int pick_fd(int *g)
{
	*g = rnd(2);
	if (gfd[*g] < 0)
		*g = 0;
	return gfd[*g];
}

static uint32_t pick_vm(int g)
{
	if (!nvms[g] || !rnd(8))
		return rnd(2) ? rnd(200) : ~0u;
	return vms[g][rnd(nvms[g])];
}

/* Mappings. */

static void new_map(struct map *m)
{
	static const size_t sizes[] = { PAGE, 4 * PAGE, 64 * 1024, 2 * MIB, 4 * MIB };
	size_t len = sizes[rnd(5)];
	uint8_t *raw = map_anon(len + 2 * MIB);

	m->p = NULL;
	m->len = 0;
	if (!raw)
		return;
	/* Huge-page aligned where it can be, so that THPs move whole. */
	m->p = (uint8_t *)(((uintptr_t)raw + 2 * MIB - 1) & ~(2 * MIB - 1));
	if (m->p > raw)
		munmap(raw, m->p - raw);
	munmap(m->p + len, raw + len + 2 * MIB - (m->p + len));
	m->len = len;
	m->rw = 1;
	m->ro_or_cow = 0;
	if (no_thp)
		madvise(m->p, len, MADV_NOHUGEPAGE);
	else if (rnd(2))
		madvise(m->p, len, MADV_HUGEPAGE);
	memset(m->p, (int)rnd(256), len);
}

/* Operations. */

static void op_migrate(void)
{
	int g;
	int f = pick_fd(&g);
	uint64_t start = edge_start();
	struct drm_vgpu_migrate a = {
		.start = start, .size = edge_size(start), .target = rnd(8) ? rnd(2) : rnd(5),
		.flags = rnd(32) ? 0 : 1, .pagemap_fd = rnd(32) ? 0 : rnd(8) - 1,
	};
	static const uint32_t slices[] = { 0, 1, 5, 100, 1000, 0x7fffffff, 0xffffffff };

	a.timeslice_ms = slices[rnd(avoid[2] ? 3 : 7)];
	doing("MIGRATE gpu%d start %#llx size %#llx target %u timeslice %u flags %u pagemap_fd %d",
	      g, (unsigned long long)a.start, (unsigned long long)a.size, a.target,
	      a.timeslice_ms, a.flags, a.pagemap_fd);
	ioctl(f, DRM_IOCTL_VGPU_MIGRATE, &a);
	done();
}

static void op_vm_access(void)
{
	int g;
	int f = pick_fd(&g);
	uint64_t start = edge_start();
	struct drm_vgpu_vm_access a = {
		.vm_id = pick_vm(g), .op = rnd(16) ? rnd(2) : 2 + rnd(3), .start = start,
		.data = edge_ptr(),
	};

	a.size = rnd(2) ? (1 + (uint64_t)rnd(SCRATCH / PAGE)) * PAGE : edge_size(start);
	if (avoid[1] && a.op == DRM_VGPU_VM_WRITE && overlaps_ro_or_cow(a.start, a.size))
		a.op = DRM_VGPU_VM_READ;
	doing("VM_ACCESS gpu%d vm %u op %u start %#llx size %#llx data %#llx", g, a.vm_id, a.op,
	      (unsigned long long)a.start, (unsigned long long)a.size,
	      (unsigned long long)a.data);
	ioctl(f, DRM_IOCTL_VGPU_VM_ACCESS, &a);
	done();
}

static void op_vm_create(void)
{
	int g;
	int f = pick_fd(&g);
	struct drm_vgpu_vm_create c = { .flags = rnd(16) ? 0 : 1 };

	doing("VM_CREATE gpu%d flags %u", g, c.flags);
	if (!ioctl(f, DRM_IOCTL_VGPU_VM_CREATE, &c)) {
		if (nvms[g] < MAX_VMS)
			vms[g][nvms[g]++] = c.vm_id;
		else
			vms[g][rnd(MAX_VMS)] = c.vm_id;	/* left for close() to free */
	}
	done();
}

static void op_vm_destroy(void)
{
	int g;
	int f = pick_fd(&g);
	struct drm_vgpu_vm_destroy d = { .vm_id = pick_vm(g), .pad = rnd(16) ? 0 : 1 };

	doing("VM_DESTROY gpu%d vm %u pad %u", g, d.vm_id, d.pad);
	if (!ioctl(f, DRM_IOCTL_VGPU_VM_DESTROY, &d)) {
		for (int i = 0; i < nvms[g]; i++) {
			if (vms[g][i] == d.vm_id) {
				vms[g][i] = vms[g][--nvms[g]];
				break;
			}
		}
	}
	done();
}

static void op_query_stats(void)
{
	int g;
	int f = pick_fd(&g);
	static const uint32_t qsizes[] = { 0, 1, 31, 32, 33, 4096, 0xffffffff };
	struct drm_vgpu_query q = {
		.extensions = rnd(16) ? 0 : edge_ptr(), .query = rnd(8) ? 0 : rnd(5),
		.size = qsizes[rnd(7)], .flags = rnd(16) ? 0 : 1, .pad = rnd(16) ? 0 : 1,
		.data = edge_ptr(),
	};
	struct drm_vgpu_stats s = { .flags = rnd(16) ? 0 : 1, .pad = rnd(16) ? 0 : 1 };
	struct drm_vgpu_evict e = { .flags = rnd(16) ? 0 : 1 };

	switch (rnd(8)) {
	case 0:
		doing("STATS gpu%d flags %u pad %u", g, s.flags, s.pad);
		ioctl(f, DRM_IOCTL_VGPU_STATS, &s);
		break;
	case 1: {
#ifdef DRM_IOCTL_VGPU_INJECT
		/* Zeroes: injection off, harmless (the ioctl is moving to debugfs). */
		struct drm_vgpu_inject inj = { 0 };

		doing("INJECT gpu%d 0 0", g);
		ioctl(f, DRM_IOCTL_VGPU_INJECT, &inj);
#else
		doing("ioctl gpu%d nr 3 (INJECT, gone)", g);
		ioctl(f, DRM_IOWR(DRM_COMMAND_BASE + 3, char[8]), scratch);
#endif
		break;
	}
	case 2:
		if (avoid[5])
			break;
		doing("EVICT gpu%d flags %u", g, e.flags);
		ioctl(f, DRM_IOCTL_VGPU_EVICT, &e);
		break;
	case 3: {
		/* Unknown driver ioctls, and known ones with the wrong size. */
		unsigned long nr = DRM_COMMAND_BASE + rnd(0x20);
		unsigned long req;

		/* The DRM core runs a known ioctl whatever the size: EVICT too. */
		if (avoid[5] && nr == DRM_COMMAND_BASE + DRM_VGPU_EVICT)
			nr++;
		req = rnd(2) ? DRM_IOWR(nr, struct drm_vgpu_query)
					   : DRM_IOWR(nr, char[8 + rnd(120)]);

		doing("ioctl gpu%d %#lx", g, req);
		ioctl(f, req, scratch);
		break;
	}
	default:
		doing("QUERY gpu%d query %u size %u flags %u pad %u ext %#llx data %#llx", g,
		      q.query, q.size, q.flags, q.pad, (unsigned long long)q.extensions,
		      (unsigned long long)q.data);
		ioctl(f, DRM_IOCTL_VGPU_QUERY, &q);
		break;
	}
	done();
}

static void op_cpu_access(void)
{
	struct map *m = any_map();
	size_t off;

	if (!m->p || !m->rw)
		return;
	off = next() % m->len;
	doing("CPU %s %p + %#zx", rnd(2) ? "read" : "write", (void *)m->p, off);
	in_cpu_access = 1;
	if (me->desc[4] == 'w')
		m->p[off] = (uint8_t)next();
	else
		(void)*(volatile uint8_t *)(m->p + off);
	in_cpu_access = 0;
	done();
}

static void op_mm(void)
{
	struct map *m = any_map();
	size_t pages = m->len / PAGE;
	size_t first = pages ? rnd((unsigned int)pages) : 0;
	size_t n = pages ? 1 + rnd((unsigned int)(pages - first)) : 0;
	uint8_t *p = m->p + first * PAGE;
	int prot;

	if (!m->p) {
		doing("mmap");
		new_map(m);
		done();
		return;
	}
	switch (rnd(8)) {
	case 0:
		doing("munmap+mmap %p %#zx", (void *)m->p, m->len);
		munmap(m->p, m->len);
		new_map(m);
		break;
	case 1:
		prot = rnd(3) == 0 ? PROT_NONE : rnd(2) ? PROT_READ : PROT_READ | PROT_WRITE;
		doing("mprotect %p %#zx %d", (void *)p, n * PAGE, prot);
		if (!mprotect(p, n * PAGE, prot)) {
			if (prot != (PROT_READ | PROT_WRITE))
				m->ro_or_cow = 1;
			m->rw = (prot == (PROT_READ | PROT_WRITE)) && n == pages ? 1 :
				prot == (PROT_READ | PROT_WRITE) ? m->rw : 0;
		}
		break;
	case 2: {
		size_t len = rnd(2) ? m->len * 2 : (m->len > PAGE ? m->len / 2 : m->len);
		uint8_t *q;

		doing("mremap %p %#zx -> %#zx", (void *)m->p, m->len, len);
		q = mremap(m->p, m->len, len, MREMAP_MAYMOVE);
		if (q != MAP_FAILED) {
			m->p = q;
			m->len = len;
		}
		break;
	}
	case 3:
		doing("madvise DONTNEED %p %#zx", (void *)p, n * PAGE);
		madvise(p, n * PAGE, MADV_DONTNEED);
		break;
	case 4:
		doing("madvise %sHUGEPAGE %p %#zx", rnd(2) ? "" : "NO", (void *)m->p, m->len);
		madvise(m->p, m->len,
			no_thp || me->desc[8] == 'N' ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
		break;
	case 5:
		doing("munmap tail %p %#zx", (void *)p, (pages - first) * PAGE);
		if (first && !munmap(p, (pages - first) * PAGE))
			m->len = first * PAGE;
		break;
	default:
		doing("migrate a whole mapping %p %#zx", (void *)m->p, m->len);
		migrate(gfd[rnd(2)] >= 0 ? gfd[rnd(2)] : gfd[0], m->p, m->len,
			DRM_VGPU_MIGRATE_TO_DEVICE);
		break;
	}
	done();
}

static void reopen(int g)
{
	doing("close+open gpu%d", g);
	if (gfd[g] >= 0)
		close(gfd[g]);
	nvms[g] = 0;
	gfd[g] = node[g][0] ? open(node[g], O_RDWR | O_CLOEXEC) : -1;
	done();
}

static void on_sig(int sig)
{
	if (in_cpu_access) {
		in_cpu_access = 0;
		siglongjmp(on_signal, sig);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void run_ops(long count, int may_fork);

/* fork: the child runs a few operations on the inherited state and exits. */
static void op_fork(struct slot *child_slot)
{
	pid_t pid;

	for (int i = 0; i < MAPS; i++)
		maps[i].ro_or_cow = 1;
	if (child_slot->pid)
		return;		/* the previous child is still running */
	doing("fork");
	child_slot->seed = (unsigned int)next();
	pid = fork();
	if (pid == 0) {
		me = child_slot;
		me->pid = getpid();
		reseed(me->seed);
		run_ops(20 + rnd(100), 0);
		me->since_ms = 0;
		me->pid = 0;
		_exit(0);
	}
	if (pid > 0)
		child_slot->pid = pid;
	done();
}

static void run_ops(long count, int may_fork)
{
	struct slot *child_slot = may_fork ? me + WORKERS : NULL;
	long long end = now_ms() + seconds * 1000LL;
	int sig;

	for (volatile long i = 0; (count < 0 || i < count) && !sh->stop && now_ms() < end; i++) {
		sig = sigsetjmp(on_signal, 1);
		if (sig) {
			if (sig == SIGBUS)
				failure("SIGBUS on a CPU access to our own memory, seed %u op %ld: %s",
					me->seed, me->op, me->desc);
			me->since_ms = 0;
			continue;
		}
		if (may_fork && child_slot->pid && waitpid(child_slot->pid, NULL, WNOHANG) > 0)
			child_slot->pid = 0;
		switch (rnd(24)) {
		case 0 ... 4: if (!strchr(skip, 'g')) op_migrate(); break;
		case 5 ... 9: if (!strchr(skip, 'a')) op_vm_access(); break;
		case 10: if (!strchr(skip, 'v')) op_vm_create(); break;
		case 11: if (!strchr(skip, 'v')) op_vm_destroy(); break;
		case 12 ... 13: if (!strchr(skip, 'q')) op_query_stats(); break;
		case 14 ... 16: if (!strchr(skip, 'c')) op_cpu_access(); break;
		case 17 ... 20: if (!strchr(skip, 'm')) op_mm(); break;
		case 21:
			if (may_fork && !strchr(skip, 'f'))
				op_fork(child_slot);
			break;
		case 22:
			if (!rnd(8) && !strchr(skip, 'o'))
				reopen(rnd(2));
			break;
		default:
			/* exit, leaving everything for the kernel to clean up */
			if (may_fork && !rnd(40) && !strchr(skip, 'x')) {
				me->since_ms = 0;
				_exit(0);
			}
			break;
		}
	}
}

static void worker(int id, unsigned int wseed)
{
	struct sigaction sa = { .sa_handler = on_sig };

	me = &sh->slot[id];
	me->seed = wseed;
	me->op = 0;
	reseed(wseed);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	scratch = map_anon(SCRATCH);
	for (int g = 0; g < 2; g++)
		gfd[g] = node[g][0] ? open(node[g], O_RDWR | O_CLOEXEC) : -1;
	for (int i = 0; i < MAPS; i++)
		new_map(&maps[i]);
	if (!scratch || gfd[0] < 0)
		_exit(1);
	for (int g = 0; g < 2; g++) {
		uint32_t id2;
		struct drm_vgpu_vm_create c = { 0 };

		if (gfd[g] >= 0 && !ioctl(gfd[g], DRM_IOCTL_VGPU_VM_CREATE, &c)) {
			id2 = c.vm_id;
			vms[g][nvms[g]++] = id2;
		}
	}
	run_ops(-1, 1);
	if (me[WORKERS].pid)
		waitpid(me[WORKERS].pid, NULL, 0);
	_exit(0);
}

/* The supervisor: keeps WORKERS workers running, names stuck calls, then checks memory. */
static enum igt_result fuzz(void)
{
	long long start = now_ms(), end = start + seconds * 1000LL, last_ok;
	unsigned int generation = 0;
	pid_t pids[WORKERS] = { 0 };
	int stuck = 0;
	uint64_t size[2] = { 0, 0 };

	if (fd < 0)
		igt_skip("no vgpu0");
	for (int g = 0; g < 2; g++) {
		int f = g ? fd1 : fd;

		if (f < 0)
			continue;
		size[g] = vram_size(f);
		if (vram_free(f) != size[g])
			igt_skip("vgpu%d's memory is in use", g);
	}
	igt_info("seed %u (VGPU_FUZZ_SEED=%u, or make check/stress SEED=%u, repeats it), %d s, "
		 "%d processes, avoiding the shapes of issue 7 items: %s\n", seed, seed, seed,
		 seconds, WORKERS, avoid_list[0] ? avoid_list : "none");
	fflush(stdout);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	igt_assert(sh != MAP_FAILED);
	/* Orphans (children of workers that exited) come back to us. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	for (;;) {
		long long t = now_ms();
		pid_t pid;

		while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
			for (int w = 0; w < WORKERS; w++)
				if (pids[w] == pid)
					pids[w] = 0;
			for (int s = 0; s < SLOTS; s++)
				if (sh->slot[s].pid == pid)
					sh->slot[s].pid = 0;
		}
		if (t >= end)
			sh->stop = 1;
		for (int w = 0; w < WORKERS && !sh->stop; w++) {
			unsigned int wseed = seed * 2654435761u + generation++ * 40503u + (unsigned)w;

			if (pids[w])
				continue;
			sh->slot[w].since_ms = 0;
			sh->slot[w].reported = 0;
			pid = fork();
			if (pid == 0)
				worker(w, wseed);
			igt_assert(pid > 0);
			pids[w] = pid;
			sh->slot[w].pid = pid;
		}
		for (int s = 0; s < SLOTS; s++) {
			struct slot *sl = &sh->slot[s];
			long long since = __atomic_load_n(&sl->since_ms, __ATOMIC_ACQUIRE);

			/* A forked child reaped by its worker, or gone before its slot was set. */
			if (sl->pid && kill(sl->pid, 0) && errno == ESRCH)
				sl->pid = 0;

			if (sl->pid && since && t - since > STUCK_S * 1000 && !sl->reported) {
				sl->reported = 1;
				stuck++;
				printf("# STUCK: pid %d (seed %u) in operation %ld for %lld s: %s\n",
				       sl->pid, sl->seed, sl->op, (t - since) / 1000, sl->desc);
				fflush(stdout);
			}
		}
		if (sh->stop) {
			int alive = 0;

			for (int w = 0; w < WORKERS; w++)
				alive += pids[w] != 0;
			for (int s = 0; s < SLOTS; s++)
				alive += sh->slot[s].pid != 0;
			if (!alive && waitpid(-1, NULL, WNOHANG) < 0)
				break;
		}
		usleep(20000);
	}
	igt_info("%ld operations in %d s by %d processes at a time: %.0f operations/s\n",
		 sh->ops, seconds, WORKERS, sh->ops * 1000.0 / (double)(now_ms() - start));
	for (int i = 0; i < sh->failures && i < 4; i++)
		igt_info("%s\n", sh->why[i]);
	igt_assert_eq(stuck, 0);
	igt_assert_eq(sh->failures, 0);
	/* Every process is gone: every GPU's memory must come back (releases are async). */
	last_ok = now_ms() + 10000;
	for (int g = 0; g < 2; g++) {
		int f = g ? fd1 : fd;

		if (f < 0)
			continue;
		while (vram_free(f) != size[g] && now_ms() < last_ok)
			usleep(20000);
		if (vram_free(f) != size[g])
			igt_info("vgpu%d: %llu of %llu bytes still allocated\n", g,
				 (unsigned long long)(size[g] - vram_free(f)),
				 (unsigned long long)size[g]);
		igt_assert_eq(vram_free(f), size[g]);
	}
	munmap(sh, sizeof(*sh));
	return IGT_PASS;
}

/* Issue 7 item 1, on purpose: never returns while that bug is there. */
static int hang_on_purpose(void)
{
	struct drm_vgpu_vm_create c = { 0 };
	struct drm_vgpu_vm_access a = { .op = DRM_VGPU_VM_WRITE, .size = PAGE };
	uint8_t *p = map_anon(PAGE), *src = map_anon(PAGE);
	int pipefd[2];
	char b;

	printf("KTAP version 1\n1..1\n# RUN hang-on-purpose\n");
	fflush(stdout);
	if (fd >= 0 && p && src && !ioctl(fd, DRM_IOCTL_VGPU_VM_CREATE, &c)) {
		memset(p, 1, PAGE);
		migrate(fd, p, PAGE, DRM_VGPU_MIGRATE_TO_DEVICE);
		mprotect(p, PAGE, PROT_READ);
		a.vm_id = c.vm_id;
		a.start = (uintptr_t)p;
		a.data = (uintptr_t)src;
		ioctl(fd, DRM_IOCTL_VGPU_VM_ACCESS, &a);
		printf("# the write returned (errno %d): waiting on a pipe instead\n", errno);
		fflush(stdout);
	}
	if (pipe(pipefd) == 0)
		while (read(pipefd[0], &b, 1) >= 0)
			;
	return 1;
}

int main(int argc, char **argv)
{
	const char *env = getenv("VGPU_FUZZ_SECONDS");

	open_nodes();
	for (int g = 0; g < 2; g++) {
		int f = g ? fd1 : fd;

		if (f >= 0)
			snprintf(node[g], sizeof(node[g]), "/proc/self/fd/%d", f);
	}
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--hang-on-purpose"))
			return hang_on_purpose();
	if (env && atoi(env) > 0)
		seconds = atoi(env);
	env = getenv("VGPU_FUZZ_SEED");
	seed = env ? (unsigned int)strtoul(env, NULL, 0) : (unsigned int)(time(NULL) ^ getpid());
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "-s"))
			seed = (unsigned int)strtoul(argv[i + 1], NULL, 0);
	env = getenv("VGPU_FUZZ_SKIP");
	if (env)
		snprintf(skip, sizeof(skip), "%s", env);
	env = getenv("VGPU_FUZZ_NO_THP");
	no_thp = env && atoi(env) > 0;
	env = getenv("VGPU_FUZZ_TRACE");
	if (env && atoi(env) > 0)
		trace_fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	env = getenv("VGPU_FUZZ_AVOID_ISSUE7");
	if (env) {
		snprintf(avoid_list, sizeof(avoid_list), "%s", env);
		for (const char *c = env; *c; c++)
			if (*c >= '1' && *c <= '7' && (c[1] == ',' || !c[1]))
				avoid[*c - '0'] = 1;
	}
	return igt_main(argc, argv, (const struct igt_subtest[]){ { "fuzz", fuzz } }, 1);
}
