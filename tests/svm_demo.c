// SPDX-License-Identifier: GPL-2.0
/*
 * svm_demo: GPU shared virtual memory on a plain malloc() buffer, across three GPUs (what
 * `make run` shows). Needs vgpu loaded with num_devices=3 links=0-1: GPUs 0 and 1 are
 * linked (one interconnect group), GPU 2 is alone.
 *
 * The buffer comes from plain malloc() (large, so glibc maps it with mmap: private anonymous
 * memory). GPU accesses are page aligned, and a GPU fault makes an SVM range of the largest
 * aligned chunk around the address (2 MiB at most), so the GPUs work on the buffer's 2 MiB
 * aligned interior: every SVM range is then a whole 2 MiB chunk of it, and the counts in the
 * table are the buffer's pages, none from the malloc() padding around it. The GPUs reach it
 * through GPU VMs (DRM_IOCTL_VGPU_VM_*) at the same addresses as the CPU.
 *
 *   1. The CPU fills the buffer.
 *   2. GPU0 writes every odd page: its first access to each SVM range faults, and the fault
 *      moves the range into GPU0's memory (the default advice), CPU data included.
 *   3. GPU1, advised that the buffer's place is system memory, reads it: the pages stay in
 *      GPU0's memory and GPU1 reads them there, in place, over the link.
 *   4. GPU1 is advised to keep the buffer in its own memory (a pagemap fd of its memory) and
 *      prefetches it: the pages move from GPU0 straight to GPU1 over the link.
 *   5. GPU1 reads it again: no fault, the prefetch bound everything.
 *   6. GPU2, which has no link, reads it with the default advice: GPU1's pages go back to
 *      system memory and from there into GPU2's memory.
 *   7. The CPU reads the buffer back (page faults pull it from GPU2) and checks every byte:
 *      even pages must hold the CPU's fill, odd pages GPU0's writes.
 *
 * After each step one table row says where the pages are (DRM_IOCTL_VGPU_RESIDENCY, asked of
 * every GPU) and what moved (DRM_IOCTL_VGPU_STATS, the change since the row before). Every
 * read checks its data. Exit status 0 if everything worked, 1 if any ioctl failed or any
 * byte was wrong. Optional argument: the buffer size in MiB (even, 2-64, default 8).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <drm/drm.h>
#include "vgpu_drm.h"
#include "vgpu_node.h"

#define NGPU 3
#define MIB (1UL << 20)
#define CHUNK (2 * MIB)
#define SEED_CPU 0x11
#define SEED_GPU0 0x5a

struct gpu {
	int fd;
	char path[64];
	struct drm_vgpu_query_device dev;
	struct drm_vgpu_query_links links;
	uint32_t vm_id;
	struct drm_vgpu_stats last;	/* counters at the previous row */
};

static struct gpu gpus[NGPU];
static uint8_t *buf;		/* the 2 MiB aligned interior of the malloc()ed buffer */
static size_t size, npages;
static uint8_t *staging;	/* GPU reads land here, GPU writes come from here */
static int failed;

/* A byte pattern that differs per byte, per page and per seed: a misplaced page shows. */
static uint8_t pattern(size_t i, unsigned int seed)
{
	return (uint8_t)((i * 2654435761u) >> 13) ^ (uint8_t)(i / PAGE) ^ (uint8_t)seed;
}

/* What byte `i` of the buffer must hold after step 2: odd pages are GPU0's. */
static uint8_t expected(size_t i)
{
	return pattern(i, (i / PAGE) % 2 ? SEED_GPU0 : SEED_CPU);
}

/*
 * Compares `p` (what `who` read of the buffer, from offset 0) with expected(): "ok", or "BAD"
 * with what is wrong in `why`.
 */
static const char *verify(const char *who, const uint8_t *p, char *why, size_t len)
{
	size_t bad = 0, first = 0;

	for (size_t i = 0; i < size; i++) {
		if (p[i] != expected(i)) {
			if (!bad++)
				first = i;
		}
	}
	if (!bad)
		return "ok";
	snprintf(why, len, "%s: %zu byte%s wrong, the first at offset %zu (page %zu): 0x%02x, not 0x%02x",
		 who, bad, bad == 1 ? "" : "s", first, first / PAGE, p[first], expected(first));
	failed = 1;
	return "BAD";
}

static int is_new_ioctl(unsigned long req)
{
	return req == DRM_IOCTL_VGPU_VM_MADVISE || req == DRM_IOCTL_VGPU_VM_PREFETCH ||
	       req == DRM_IOCTL_VGPU_VM_ATOMIC || req == DRM_IOCTL_VGPU_RESIDENCY;
}

/* An ioctl on GPU `g` that must succeed: on failure, says which and exits 1. */
static void gpu_ioctl(int g, unsigned long req, void *arg, const char *name)
{
	int err;

	if (!ioctl(gpus[g].fd, req, arg))
		return;
	err = errno;
	printf("\nsvm_demo: GPU%d: %s failed: %s (errno %d)\n", g, name, strerror(err), err);
	if ((err == EINVAL || err == ENOTTY) && is_new_ioctl(req))
		printf("svm_demo: (a vgpu.ko without the GPU SVM uAPI of uapi/vgpu_drm.h answers so)\n");
	printf("FAIL\n");
	exit(1);
}

#define GPU_IOCTL(g, req, arg) gpu_ioctl(g, req, arg, #req)

static void query(int f, uint32_t kind, void *data, uint32_t len)
{
	struct drm_vgpu_query q = { .query = kind, .size = len, .data = (uintptr_t)data };

	if (ioctl(f, DRM_IOCTL_VGPU_QUERY, &q))
		memset(data, 0xff, len);
}

static void open_gpus(void)
{
	char path[64];
	int cursor = 0, f, found = 0;

	for (int g = 0; g < NGPU; g++)
		gpus[g].fd = -1;
	while ((f = vgpu_node_next(&cursor, path, sizeof(path))) >= 0) {
		struct drm_vgpu_query_device d;

		query(f, DRM_VGPU_QUERY_DEVICE, &d, sizeof(d));
		if (d.index < NGPU && gpus[d.index].fd < 0) {
			struct gpu *g = &gpus[d.index];

			g->fd = f;
			g->dev = d;
			snprintf(g->path, sizeof(g->path), "%s", path);
			query(f, DRM_VGPU_QUERY_LINKS, &g->links, sizeof(g->links));
			found++;
		} else {
			close(f);
		}
	}
	/* GPUs 0 and 1 in one group, GPU 2 alone: num_devices=3 links=0-1. */
	if (found != NGPU || gpus[0].dev.num_devices != NGPU || gpus[0].links.group != 0x3 ||
	    gpus[1].links.group != 0x3 || gpus[2].links.group != 0x4) {
		printf("svm_demo: needs vgpu loaded with num_devices=3 links=0-1 (found %d GPUs)\n",
		       found);
		printf("FAIL\n");
		exit(1);
	}
}

static void vm_create(int g)
{
	struct drm_vgpu_vm_create c = { 0 };

	GPU_IOCTL(g, DRM_IOCTL_VGPU_VM_CREATE, &c);
	gpus[g].vm_id = c.vm_id;
}

static void madvise_range(int g, uint32_t location, int pagemap_fd)
{
	struct drm_vgpu_vm_madvise a = {
		.vm_id = gpus[g].vm_id, .location = location,
		.start = (uintptr_t)buf, .size = size, .pagemap_fd = pagemap_fd,
	};

	GPU_IOCTL(g, DRM_IOCTL_VGPU_VM_MADVISE, &a);
}

static void prefetch(int g)
{
	struct drm_vgpu_vm_prefetch p = {
		.vm_id = gpus[g].vm_id, .start = (uintptr_t)buf, .size = size,
	};

	GPU_IOCTL(g, DRM_IOCTL_VGPU_VM_PREFETCH, &p);
}

/* GPU `g` reads or writes [buf + off, + len) from or to `data`, through its VM. */
static void access_range(int g, uint32_t op, size_t off, size_t len, void *data)
{
	struct drm_vgpu_vm_access a = {
		.vm_id = gpus[g].vm_id, .op = op,
		.start = (uintptr_t)(buf + off), .size = len, .data = (uintptr_t)data,
	};

	GPU_IOCTL(g, DRM_IOCTL_VGPU_VM_ACCESS, &a);
}

static void append(char *s, size_t len, const char *fmt, ...)
{
	size_t used = strlen(s);
	va_list ap;

	if (used >= len - 1)
		return;
	if (used)
		snprintf(s + used, len - used, ", ");
	used = strlen(s);
	va_start(ap, fmt);
	vsnprintf(s + used, len - used, fmt, ap);
	va_end(ap);
}

static unsigned long long d(uint64_t now, uint64_t before)
{
	return (unsigned long long)(now - before);
}

/* The one GPU other than `g` in g's interconnect group, or -1. */
static int only_peer(int g)
{
	uint32_t others = gpus[g].links.group & ~(1u << g);

	if (!others || (others & (others - 1)))
		return -1;
	return __builtin_ctz(others);
}

#define STEP_FMT "  %-34s %6s %6s %6s %6s  %-8s %-5s %s\n"

static void header(void)
{
	printf("\n  %-34s %27s\n", "", "-------- pages in ---------");
	printf(STEP_FMT, "step", "RAM", "GPU0", "GPU1", "GPU2", "faults", "data", "moved (pages)");
}

/* One table row: where the pages are now, and what changed since the last row. */
static void row(const char *step, const char *data)
{
	struct drm_vgpu_residency r[NGPU];
	struct drm_vgpu_stats s[NGPU];
	char where[NGPU + 1][16], faults[64] = "", moved[256] = "", note[128] = "";
	unsigned long long placed = 0;

	for (int g = 0; g < NGPU; g++) {
		r[g] = (struct drm_vgpu_residency){ .start = (uintptr_t)buf, .size = size };
		GPU_IOCTL(g, DRM_IOCTL_VGPU_RESIDENCY, &r[g]);
		s[g] = (struct drm_vgpu_stats){ 0 };
		GPU_IOCTL(g, DRM_IOCTL_VGPU_STATS, &s[g]);
	}

	/* RAM as GPU0 sees it; each GPU's own memory as that GPU sees it. */
	snprintf(where[0], sizeof(where[0]), "%llu", (unsigned long long)r[0].system);
	placed = r[0].system;
	for (int g = 0; g < NGPU; g++) {
		snprintf(where[g + 1], sizeof(where[g + 1]), "%llu", (unsigned long long)r[g].local);
		placed += r[g].local;
		if (r[g].system != r[0].system)
			snprintf(note, sizeof(note), " [GPU%d sees %llu pages in RAM]", g,
				 (unsigned long long)r[g].system);
	}
	if (placed != npages)
		snprintf(note + strlen(note), sizeof(note) - strlen(note),
			 " [%llu pages nowhere: untouched]", (unsigned long long)(npages - placed));

	for (int g = 0; g < NGPU; g++) {
		const struct drm_vgpu_stats *n = &s[g], *o = &gpus[g].last;

		if (n->gpu_faults != o->gpu_faults)
			append(faults, sizeof(faults), "GPU%d %llu", g, d(n->gpu_faults, o->gpu_faults));
	}
	/* Back to RAM first (that is what happens first), then device to device, then in. */
	for (int g = 0; g < NGPU; g++) {
		const struct drm_vgpu_stats *n = &s[g], *o = &gpus[g].last;

		if (n->pages_to_system == o->pages_to_system)
			continue;
		append(moved, sizeof(moved), "GPU%d->RAM %llu", g,
		       d(n->pages_to_system, o->pages_to_system));
		if (n->cpu_faults != o->cpu_faults)
			snprintf(moved + strlen(moved), sizeof(moved) - strlen(moved),
				 " (%llu fault%s)", d(n->cpu_faults, o->cpu_faults),
				 d(n->cpu_faults, o->cpu_faults) == 1 ? "" : "s");
	}
	for (int g = 0; g < NGPU; g++) {
		const struct drm_vgpu_stats *n = &s[g], *o = &gpus[g].last;
		unsigned long long from_peer = d(n->pages_from_peer, o->pages_from_peer);
		unsigned long long from_ram = d(n->pages_to_device, o->pages_to_device) - from_peer;
		int p = only_peer(g);

		if (from_peer && p >= 0)
			append(moved, sizeof(moved), "GPU%d->GPU%d %llu over the link", p, g, from_peer);
		else if (from_peer)
			append(moved, sizeof(moved), "peer->GPU%d %llu over the link", g, from_peer);
		if (from_ram)
			append(moved, sizeof(moved), "RAM->GPU%d %llu", g, from_ram);
	}
	/* What a GPU reached in place in a linked GPU's memory, without moving it. */
	for (int g = 0; g < NGPU; g++) {
		const struct drm_vgpu_stats *n = &s[g], *o = &gpus[g].last;
		unsigned long long in_place = d(n->peer_accesses, o->peer_accesses);
		size_t used = strlen(moved);
		char peer[8] = "a peer";
		int p = only_peer(g);

		if (!in_place)
			continue;
		if (p >= 0)
			snprintf(peer, sizeof(peer), "GPU%d", p);
		snprintf(moved + used, sizeof(moved) - used, "%sGPU%d reached %llu in %s in place",
			 used ? "; " : "nothing; ", g, in_place, peer);
	}
	for (int g = 0; g < NGPU; g++)
		gpus[g].last = s[g];

	printf(STEP_FMT, step, where[0], where[1], where[2], where[3], faults[0] ? faults : "-",
	       data, moved[0] ? moved : "-");
	if (note[0])
		printf("  %-34s%s\n", "", note);
}

/* GPU `g` reads the whole buffer into the staging buffer and checks it. */
static const char *gpu_read_and_check(int g, char *why, size_t len)
{
	char who[32];

	memset(staging, 0, size);
	access_range(g, DRM_VGPU_VM_READ, 0, size, staging);
	snprintf(who, sizeof(who), "GPU%d's read", g);
	return verify(who, staging, why, len);
}

int main(int argc, char **argv)
{
	char why[NGPU + 4][192];
	unsigned long mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 8;
	int nwhy = 0, pagemap_fd;
	const char *ok;
	void *raw;

	setvbuf(stdout, NULL, _IOLBF, 0);
	vgpu_check_page_size();
	if (mib < 2 || mib > 64 || mib % 2) {
		printf("usage: svm_demo [MiB: even, 2-64, default 8]\n");
		return 1;
	}
	size = mib * MIB;
	npages = size / PAGE;
	memset(why, 0, sizeof(why));

	open_gpus();
	printf("\nsvm_demo: one malloc() buffer, shared by the CPU and three GPUs\n");
	for (int g = 0; g < NGPU; g++) {
		int p = only_peer(g);

		printf("  GPU%d  %-20s %4llu MiB of memory, ", g, gpus[g].path,
		       (unsigned long long)gpus[g].dev.vram_size >> 20);
		if (p >= 0)
			printf("linked to GPU%d\n", p);
		else
			printf("no link\n");
	}

	/* Plain malloc: glibc mmaps a buffer this large. The GPUs use its 2 MiB aligned part. */
	raw = malloc(size + CHUNK);
	staging = malloc(size);
	if (!raw || !staging) {
		printf("svm_demo: out of memory\nFAIL\n");
		return 1;
	}
	buf = (uint8_t *)(((uintptr_t)raw + CHUNK - 1) & ~(CHUNK - 1));
	printf("  buffer: malloc(%lu MiB) = %p; its 2 MiB aligned %lu MiB at %p: %zu pages\n",
	       mib + 2, raw, mib, (void *)buf, npages);

	for (int g = 0; g < NGPU; g++) {
		vm_create(g);
		GPU_IOCTL(g, DRM_IOCTL_VGPU_STATS, &gpus[g].last);
	}
	header();

	/* 1. The CPU fills every byte. */
	for (size_t i = 0; i < size; i++)
		buf[i] = pattern(i, SEED_CPU);
	row("1 CPU fills it", "-");

	/* 2. GPU0 writes the odd pages, one page per access; default advice: its memory. */
	for (size_t pg = 1; pg < npages; pg += 2) {
		for (size_t j = 0; j < PAGE; j++)
			staging[j] = pattern(pg * PAGE + j, SEED_GPU0);
		access_range(0, DRM_VGPU_VM_WRITE, pg * PAGE, PAGE, staging);
	}
	row("2 GPU0 writes the odd pages", "-");

	/* 3. GPU1, advice system memory: maps the pages where they are (GPU0), reads in place. */
	madvise_range(1, DRM_VGPU_LOCATION_SYSTEM, 0);
	ok = gpu_read_and_check(1, why[nwhy], sizeof(why[0]));
	nwhy += ok[0] != 'o';
	row("3 GPU1 reads it (advice: RAM)", ok);

	/* 4. GPU1, advice its own memory (named by a pagemap fd), prefetches: GPU0 -> GPU1. */
	{
		struct drm_vgpu_devmem_open o = { 0 };

		GPU_IOCTL(1, DRM_IOCTL_VGPU_DEVMEM_OPEN, &o);
		pagemap_fd = o.fd;
	}
	madvise_range(1, DRM_VGPU_LOCATION_PAGEMAP, pagemap_fd);
	prefetch(1);
	row("4 GPU1 prefetches (advice: GPU1)", "-");

	/* 5. GPU1 reads again: everything is bound, no fault. */
	ok = gpu_read_and_check(1, why[nwhy], sizeof(why[0]));
	nwhy += ok[0] != 'o';
	row("5 GPU1 reads it", ok);

	/* 6. GPU2, no link to GPU1, default advice: GPU1 -> RAM -> GPU2. */
	ok = gpu_read_and_check(2, why[nwhy], sizeof(why[0]));
	nwhy += ok[0] != 'o';
	row("6 GPU2 reads it (no link)", ok);

	/* 7. The CPU reads every byte back (faults pull the pages from GPU2) and checks it. */
	ok = verify("the CPU's read", buf, why[nwhy], sizeof(why[0]));
	nwhy += ok[0] != 'o';
	row("7 CPU reads it back, checks it", ok);

	printf("\n  pages in: where the buffer's pages are (DRM_IOCTL_VGPU_RESIDENCY)\n"
	       "  faults:   GPU page faults, one per SVM range placed and bound\n"
	       "  moved:    pages the copy engines moved (DRM_IOCTL_VGPU_STATS); \"(N faults)\": the page\n"
	       "            faults that pulled them back; \"in place\": read over the link, not moved\n"
	       "  data:     what that read saw, every byte checked\n\n");
	for (int i = 0; i < nwhy; i++)
		printf("  BAD data: %s\n", why[i]);
	if (failed) {
		printf("FAIL\n");
		return 1;
	}
	printf("  check: all %zu bytes right (even pages: the CPU's fill, odd pages: GPU0's writes)\n",
	       size);

	for (int g = 0; g < NGPU; g++) {
		struct drm_vgpu_vm_destroy v = { .vm_id = gpus[g].vm_id };

		GPU_IOCTL(g, DRM_IOCTL_VGPU_VM_DESTROY, &v);
	}
	close(pagemap_fd);
	free(raw);
	free(staging);
	for (int g = 0; g < NGPU; g++)
		close(gpus[g].fd);
	printf("PASS\n");
	return 0;
}
