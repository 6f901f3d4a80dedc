// SPDX-License-Identifier: GPL-2.0
/*
 * fail_nth: every vgpu ioctl, and the CPU-fault path, with its 1st, 2nd, 3rd... kernel
 * allocation failed in turn (per-task fault injection, /proc/self/task/TID/fail-nth, with
 * failslab and fail_page_alloc counting every allocation), until the call goes through
 * without reaching the Nth. After each attempt: the call returned, and either succeeded or
 * gave a clean errno (ENOMEM, EFAULT, EINTR, EAGAIN, EBUSY, EIO); every byte of the data is
 * intact; the device memory is back to its baseline once the test's data is gone. A WARN,
 * KASAN report or leak on an error path fails the run through the kernel log.
 *
 * Each subtest prints how many fail-nth points its call exercised ("points": allocations
 * whose failure the call saw). The CPU-fault path runs in a child, since a failed
 * allocation there may end in SIGBUS: accepted only if every byte reads back intact after.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "igt.h"
#include "vgpu_util.h"

#define PAGES 16
#define SIZE (PAGES * PAGE)
/* No call of these has anywhere near this many allocations: reaching it is a failure. */
#define MAX_POINTS 1000

static int nth_fd = -1;
static char points_summary[512];

/* The state an attempt works on. */
struct ctx {
	uint8_t *buf;		/* SIZE bytes of anonymous memory, filled with pattern(seed) */
	uint8_t *data;		/* SIZE bytes of user buffer for VM_ACCESS */
	uint32_t vm;		/* a GPU VM, 0 if none */
	unsigned int seed;
	long extra;		/* per-case scratch (e.g. VM_CREATE's new id) */
};

struct fault_case {
	const char *name;
	/* Prepares the state (outside the injection window). */
	int (*setup)(struct ctx *c);
	/* The call under test: 0 or -1 with errno. */
	int (*call)(struct ctx *c);
	/* Checks after the call (ret, errno), outside the window: 0 if fine. */
	int (*verify)(struct ctx *c, int ret, int err);
};

static int open_fail_nth(void)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%ld/fail-nth", (long)syscall(SYS_gettid));
	return open(path, O_RDWR | O_CLOEXEC);
}

static int set_nth(int f, int n)
{
	char b[16];
	int len = snprintf(b, sizeof(b), "%d", n);

	return pwrite(f, b, len, 0) == len ? 0 : -1;
}

/* What is left of the countdown: 0 if the Nth allocation was failed. */
static int get_nth(int f)
{
	char b[16] = { 0 };

	if (pread(f, b, sizeof(b) - 1, 0) <= 0)
		return -1;
	return atoi(b);
}

static int write_str(const char *path, const char *val)
{
	int f = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (f < 0)
		return -1;
	n = write(f, val, strlen(val));
	close(f);
	return n == (ssize_t)strlen(val) ? 0 : -1;
}

/*
 * failslab and fail_page_alloc skip sleeping (GFP_KERNEL) allocations and fail_page_alloc
 * order-0 pages by default: count them all, and print no stack per injected failure.
 */
static int setup_debugfs(void)
{
	static const char *const settings[][2] = {
		{ "/sys/kernel/debug/failslab/ignore-gfp-wait", "N" },
		{ "/sys/kernel/debug/failslab/verbose", "0" },
		{ "/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait", "N" },
		{ "/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem", "N" },
		{ "/sys/kernel/debug/fail_page_alloc/min-order", "0" },
		{ "/sys/kernel/debug/fail_page_alloc/verbose", "0" },
	};

	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (write_str(settings[i][0], settings[i][1]))
			return -1;
	return 0;
}

static int clean_errno(int err)
{
	return err == ENOMEM || err == EFAULT || err == EINTR || err == EAGAIN || err == EBUSY ||
	       err == EIO;
}

/* Waits (up to 3 s: releases run from a workqueue) for vgpu0's free memory to be `want`. */
static int vram_settles(uint64_t want)
{
	for (int i = 0; i < 300; i++) {
		if (vram_free(fd) == want)
			return 1;
		usleep(10000);
	}
	return vram_free(fd) == want;
}

static int vm_create(uint32_t *id)
{
	struct drm_vgpu_vm_create c = { 0 };
	int ret = ioctl(fd, DRM_IOCTL_VGPU_VM_CREATE, &c);

	*id = c.vm_id;
	return ret;
}

static int vm_destroy(uint32_t id)
{
	struct drm_vgpu_vm_destroy d = { .vm_id = id };

	return ioctl(fd, DRM_IOCTL_VGPU_VM_DESTROY, &d);
}

static int vm_access(uint32_t id, uint32_t op, void *start, size_t size, void *data)
{
	struct drm_vgpu_vm_access a = {
		.vm_id = id, .op = op, .start = (uintptr_t)start, .size = size,
		.data = (uintptr_t)data,
	};

	return ioctl(fd, DRM_IOCTL_VGPU_VM_ACCESS, &a);
}

/* Setups. */

static int setup_none(struct ctx *c)
{
	(void)c;
	return 0;
}

static int setup_buf(struct ctx *c)
{
	c->buf = map_anon(SIZE);
	if (!c->buf)
		return -1;
	fill(c->buf, SIZE, c->seed);
	return 0;
}

static int setup_buf_on_device(struct ctx *c)
{
	if (setup_buf(c))
		return -1;
	return migrate(fd, c->buf, SIZE, DRM_VGPU_MIGRATE_TO_DEVICE);
}

/* A VM, the buffer with its first half in device memory, a pre-faulted data buffer. */
static int setup_vm_access(struct ctx *c)
{
	if (setup_buf(c) || migrate(fd, c->buf, SIZE / 2, DRM_VGPU_MIGRATE_TO_DEVICE))
		return -1;
	c->data = map_anon(SIZE);
	if (!c->data)
		return -1;
	fill(c->data, SIZE, c->seed + 1);
	return vm_create(&c->vm);
}

/* The same, with the VM's page table filled by a read of the whole buffer. */
static int setup_vm_populated(struct ctx *c)
{
	if (setup_vm_access(c))
		return -1;
	return vm_access(c->vm, DRM_VGPU_VM_READ, c->buf, SIZE, c->data);
}

/* Calls. */

static int call_query(struct ctx *c)
{
	struct drm_vgpu_query_device d;
	struct drm_vgpu_query q = {
		.query = DRM_VGPU_QUERY_DEVICE, .size = sizeof(d), .data = (uintptr_t)&d,
	};
	int ret = ioctl(fd, DRM_IOCTL_VGPU_QUERY, &q);

	c->extra = ret ? 0 : (long)(d.vram_size >> 20);
	return ret;
}

static int call_to_device(struct ctx *c)
{
	return migrate(fd, c->buf, SIZE, DRM_VGPU_MIGRATE_TO_DEVICE);
}

static int call_to_system(struct ctx *c)
{
	return migrate(fd, c->buf, SIZE, DRM_VGPU_MIGRATE_TO_SYSTEM);
}

static int call_stats(struct ctx *c)
{
	struct drm_vgpu_stats s = { 0 };
	int ret = ioctl(fd, DRM_IOCTL_VGPU_STATS, &s);

	c->extra = ret ? 0 : (long)s.pages_to_device;
	return ret;
}

static int call_evict(struct ctx *c)
{
	struct drm_vgpu_evict e = { 0 };

	(void)c;
	return ioctl(fd, DRM_IOCTL_VGPU_EVICT, &e);
}

static int call_vm_create(struct ctx *c)
{
	return vm_create(&c->vm);
}

static int call_vm_read(struct ctx *c)
{
	return vm_access(c->vm, DRM_VGPU_VM_READ, c->buf, SIZE, c->data);
}

static int call_vm_write(struct ctx *c)
{
	return vm_access(c->vm, DRM_VGPU_VM_WRITE, c->buf, SIZE, c->data);
}

static int call_vm_destroy(struct ctx *c)
{
	int ret = vm_destroy(c->vm);

	if (!ret)
		c->vm = 0;
	return ret;
}

/* Checks. */

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			printf("# %s:%d: %s failed\n", __FILE__, __LINE__, #cond); \
			return -1;                                              \
		}                                                               \
	} while (0)

static int buf_intact(struct ctx *c)
{
	long bad = check(c->buf, SIZE, c->seed);

	if (bad != -1)
		printf("# byte %ld of the buffer is wrong\n", bad);
	return bad == -1;
}

static int verify_query(struct ctx *c, int ret, int err)
{
	(void)err;
	CHECK(ret || c->extra > 0);
	return 0;
}

static int verify_to_device(struct ctx *c, int ret, int err)
{
	(void)err;
	/* All or nothing: a failed migration leaves nothing in device memory. */
	if (ret)
		CHECK(vram_settles(vram_size(fd)));
	else
		CHECK(vram_free(fd) < vram_size(fd));
	CHECK(buf_intact(c));
	return 0;
}

static int verify_data(struct ctx *c, int ret, int err)
{
	(void)ret;
	(void)err;
	CHECK(buf_intact(c));
	return 0;
}

static int verify_stats(struct ctx *c, int ret, int err)
{
	(void)err;
	CHECK(ret || c->extra >= 0);
	return 0;
}

static int verify_evict(struct ctx *c, int ret, int err)
{
	(void)err;
	if (!ret)
		CHECK(vram_settles(vram_size(fd)));
	CHECK(buf_intact(c));
	return 0;
}

static int verify_vm_create(struct ctx *c, int ret, int err)
{
	(void)err;
	if (!ret) {
		CHECK(c->vm != 0);
		/* The new VM works. */
		c->data = map_anon(SIZE);
		CHECK(c->data);
		CHECK(setup_buf(c) == 0);
		CHECK(vm_access(c->vm, DRM_VGPU_VM_READ, c->buf, SIZE, c->data) == 0);
		CHECK(check(c->data, SIZE, c->seed) == -1);
	} else {
		c->vm = 0;
	}
	return 0;
}

static int verify_vm_read(struct ctx *c, int ret, int err)
{
	(void)err;
	if (!ret)
		CHECK(check(c->data, SIZE, c->seed) == -1);
	CHECK(buf_intact(c));
	/* The VM still works after a failure. */
	CHECK(vm_access(c->vm, DRM_VGPU_VM_READ, c->buf, SIZE, c->data) == 0);
	CHECK(check(c->data, SIZE, c->seed) == -1);
	return 0;
}

static int verify_vm_write(struct ctx *c, int ret, int err)
{
	(void)err;
	if (!ret) {
		CHECK(check(c->buf, SIZE, c->seed + 1) == -1);
		return 0;
	}
	/* Partly written is fine; anything but the old or the new byte is not. */
	for (size_t i = 0; i < SIZE; i++) {
		if (c->buf[i] != pattern(i, c->seed) && c->buf[i] != pattern(i, c->seed + 1)) {
			printf("# byte %zu is neither the old nor the new data\n", i);
			return -1;
		}
	}
	CHECK(check(c->data, SIZE, c->seed + 1) == -1);
	return 0;
}

static int verify_vm_destroy(struct ctx *c, int ret, int err)
{
	(void)err;
	if (ret) {
		/* Still there, and usable, after a failed destroy. */
		CHECK(vm_access(c->vm, DRM_VGPU_VM_READ, c->buf, SIZE, c->data) == 0);
		CHECK(vm_destroy(c->vm) == 0);
	} else {
		errno = 0;
		CHECK(vm_destroy(c->vm ? c->vm : c->extra) == -1 && errno == ENOENT);
	}
	c->vm = 0;
	CHECK(buf_intact(c));
	return 0;
}

static void teardown(struct ctx *c)
{
	if (c->vm)
		vm_destroy(c->vm);
	if (c->buf)
		munmap(c->buf, SIZE);
	if (c->data)
		munmap(c->data, SIZE);
	memset(c, 0, sizeof(*c));
}

static const char *errname(int err)
{
	switch (err) {
	case ENOMEM: return "ENOMEM";
	case EFAULT: return "EFAULT";
	case EINTR: return "EINTR";
	case EAGAIN: return "EAGAIN";
	case EBUSY: return "EBUSY";
	case EIO: return "EIO";
	default: return strerror(err);
	}
}

static void note_points(const char *name, int points)
{
	size_t len = strlen(points_summary);

	snprintf(points_summary + len, sizeof(points_summary) - len, "%s%s %d",
		 len ? ", " : "", name, points);
}

/*
 * Fails the 1st, 2nd, ... allocation of `fc`'s call until the call no longer reaches the
 * Nth; checks every attempt. Returns the number of points, or -1 on a failed check.
 */
static int run_case(const struct fault_case *fc)
{
	uint64_t base = vram_size(fd);
	int errs[4] = { 0 };	/* ENOMEM, EFAULT, other clean, succeeded anyway */

	for (int n = 1; n <= MAX_POINTS; n++) {
		struct ctx c = { .seed = 7u * n };
		int ret, err, left;

		if (fc->setup(&c)) {
			printf("# %s: setup failed at point %d (errno %d)\n", fc->name, n, errno);
			teardown(&c);
			return -1;
		}
		c.extra = c.vm;
		/* The window: nothing between the write and the read but the call. */
		if (set_nth(nth_fd, n)) {
			printf("# %s: cannot arm fail-nth (errno %d)\n", fc->name, errno);
			teardown(&c);
			return -1;
		}
		errno = 0;
		ret = fc->call(&c);
		err = errno;
		left = get_nth(nth_fd);
		if (left)
			set_nth(nth_fd, 0);
		if (ret && (left || !clean_errno(err))) {
			printf("# %s: point %d (%s): the call failed with %s\n", fc->name, n,
			       left ? "no failure injected" : "allocation failed", errname(err));
			teardown(&c);
			return -1;
		}
		if (fc->verify(&c, ret, err)) {
			printf("# %s: point %d (%s, call returned %d/%s): check failed\n", fc->name,
			       n, left ? "no failure injected" : "allocation failed", ret,
			       ret ? errname(err) : "-");
			teardown(&c);
			return -1;
		}
		teardown(&c);
		if (!vram_settles(base)) {
			printf("# %s: point %d: device memory %llu bytes free, %llu before\n",
			       fc->name, n, (unsigned long long)vram_free(fd),
			       (unsigned long long)base);
			return -1;
		}
		if (left) {
			igt_info("fail-nth %s: %d points (%d ENOMEM, %d EFAULT, %d other clean "
				 "errno, %d went through)\n", fc->name, n - 1, errs[0], errs[1],
				 errs[2], errs[3]);
			note_points(fc->name, n - 1);
			return n - 1;
		}
		errs[!ret ? 3 : err == ENOMEM ? 0 : err == EFAULT ? 1 : 2]++;
	}
	printf("# %s: still reaching fail-nth after %d points\n", fc->name, MAX_POINTS);
	return -1;
}

#define NEED() do {                                                             \
		if (fd < 0)                                                     \
			igt_skip("no vgpu0");                                   \
		if (nth_fd < 0)                                                 \
			igt_skip("no fail-nth (CONFIG_FAULT_INJECTION)");       \
		if (vram_free(fd) != vram_size(fd))                             \
			igt_skip("vgpu0's memory is in use");                   \
	} while (0)

/*
 * A case whose call allocates must reach at least `min` fail-nth points: zero would mean
 * that injection is not reaching it (and the case checked nothing).
 */
#define CASE(fn, label, s, c, v, min)                                           \
	static enum igt_result fn(void)                                         \
	{                                                                       \
		static const struct fault_case fc = { label, s, c, v };         \
		NEED();                                                         \
		igt_assert(run_case(&fc) >= (min));                             \
		return IGT_PASS;                                                \
	}

CASE(query, "query", setup_none, call_query, verify_query, 0)
CASE(to_device, "migrate-to-device", setup_buf, call_to_device, verify_to_device, 1)
CASE(to_system, "migrate-to-system", setup_buf_on_device, call_to_system, verify_data, 1)
CASE(stats_, "stats", setup_none, call_stats, verify_stats, 0)
CASE(evict, "evict", setup_buf_on_device, call_evict, verify_evict, 1)
CASE(vm_create_, "vm-create", setup_none, call_vm_create, verify_vm_create, 1)
CASE(vm_read, "vm-access-read", setup_vm_access, call_vm_read, verify_vm_read, 1)
CASE(vm_write, "vm-access-write", setup_vm_access, call_vm_write, verify_vm_write, 1)
CASE(vm_destroy_, "vm-destroy", setup_vm_populated, call_vm_destroy, verify_vm_destroy, 0)

/* The CPU-fault path, in a child. */

static sigjmp_buf on_sigbus;
/* Shared with the child: its number of points. */
static volatile int *child_points;

static void sigbus(int sig)
{
	(void)sig;
	siglongjmp(on_sigbus, 1);
}

/* Child: returns 0 if every attempt kept the data, prints the points. */
static int cpu_fault_child(void)
{
	struct sigaction sa = { .sa_handler = sigbus };
	uint64_t base = vram_size(fd);
	int f = open_fail_nth(), sigbuses = 0;

	if (f < 0)
		return 1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	for (int n = 1; n <= MAX_POINTS; n++) {
		struct ctx c = { .seed = 11u * n };
		volatile unsigned int sum = 0;
		volatile int left = -1, got_sigbus = 0;

		if (setup_buf_on_device(&c)) {
			printf("# cpu-fault: setup failed at point %d (errno %d)\n", n, errno);
			return 1;
		}
		if (sigsetjmp(on_sigbus, 1)) {
			got_sigbus = 1;
		} else {
			set_nth(f, n);
			/* Every page faults back from device memory. */
			for (size_t i = 0; i < SIZE; i += PAGE)
				sum += c.buf[i];
		}
		left = get_nth(f);
		if (left)
			set_nth(f, 0);
		if (got_sigbus) {
			sigbuses++;
			if (left) {
				printf("# cpu-fault: point %d: SIGBUS without an injected failure\n", n);
				return 1;
			}
		}
		if (!buf_intact(&c)) {
			printf("# cpu-fault: point %d (%s): data lost\n", n,
			       got_sigbus ? "after SIGBUS" : "no signal");
			return 1;
		}
		teardown(&c);
		if (!vram_settles(base)) {
			printf("# cpu-fault: point %d: device memory not released\n", n);
			return 1;
		}
		if (left) {
			igt_info("fail-nth cpu-fault: %d points (%d ended in SIGBUS, data intact)\n",
				 n - 1, sigbuses);
			*child_points = n - 1;
			return 0;
		}
	}
	printf("# cpu-fault: still reaching fail-nth after %d points\n", MAX_POINTS);
	return 1;
}

static enum igt_result cpu_fault(void)
{
	int status;
	pid_t pid;

	NEED();
	child_points = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	igt_assert(child_points != MAP_FAILED);
	*child_points = -1;
	fflush(stdout);
	pid = fork();
	igt_assert(pid >= 0);
	if (pid == 0) {
		int r = cpu_fault_child();

		fflush(stdout);
		_exit(r);
	}
	igt_assert_eq(waitpid(pid, &status, 0), pid);
	igt_assert(WIFEXITED(status));
	igt_assert_eq(WEXITSTATUS(status), 0);
	note_points("cpu-fault", *child_points);
	igt_assert(*child_points >= 1);
	munmap((void *)child_points, PAGE);
	return IGT_PASS;
}

static const struct igt_subtest tests[] = {
	{ "query", query },
	{ "migrate-to-device", to_device },
	{ "migrate-to-system", to_system },
	{ "stats", stats_ },
	{ "evict", evict },
	{ "vm-create", vm_create_ },
	{ "vm-access-read", vm_read },
	{ "vm-access-write", vm_write },
	{ "vm-destroy", vm_destroy_ },
	{ "cpu-fault", cpu_fault },
};

/* Faults in the stack the calls will use, so that no stack page fault lands in a window. */
static void __attribute__((noinline)) prefault_stack(void)
{
	volatile char deep[64 * 1024];

	for (size_t i = 0; i < sizeof(deep); i += 512)
		deep[i] = 0;
}

int main(int argc, char **argv)
{
	char printk[64] = { 0 };
	int pf, ret;

	/*
	 * Subtests share this process: the fail-nth file is the task's own (an fd opened here
	 * would inject into this task, not a forked child), and the points summary below adds
	 * up what every subtest counted.
	 */
	igt_fork = 0;
	prefault_stack();
	open_nodes();
	if (!setup_debugfs())
		nth_fd = open_fail_nth();
	/*
	 * An injected page-allocation failure prints a warning with a stack at KERN_WARNING:
	 * keep those off the serial console while this runs (they stay in the kernel log, which
	 * the runner reads whole; errors and worse still reach the console).
	 */
	pf = open("/proc/sys/kernel/printk", O_RDWR | O_CLOEXEC);
	if (pf >= 0 && read(pf, printk, sizeof(printk) - 1) > 0)
		write_str("/proc/sys/kernel/printk", "4");
	ret = igt_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
	if (pf >= 0 && printk[0]) {
		char *sp = strchr(printk, '\t');

		if (sp)
			*sp = 0;
		write_str("/proc/sys/kernel/printk", printk);
		close(pf);
	}
	printf("# fail-nth points per call: %s\n", points_summary);
	return ret;
}
