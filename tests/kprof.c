// SPDX-License-Identifier: GPL-2.0
/*
 * kprof TOP PROGRAM [ARGS...]: samples the kernel's instruction pointer on every CPU
 * (cpu-clock, every 200 us) while PROGRAM runs, and prints the TOP kernel symbols by samples
 * (resolved against /proc/kallsyms, which needs kptr_restrict=0). The events start disabled;
 * PROGRAM enables them around what it wants measured: their descriptors are in the
 * environment variable KPROF_FDS (comma-separated), for PERF_EVENT_IOC_ENABLE/DISABLE.
 * `make profile` uses it to find where a migration's time goes.
 */
#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CPUS 64
#define RING_PAGES 256

struct sym {
	uint64_t addr;
	char name[200];
	long count;
};

static uint64_t *ips;
static size_t nips, capips;

static void add_ip(uint64_t ip)
{
	if (nips == capips) {
		capips = capips ? capips * 2 : 65536;
		ips = realloc(ips, capips * sizeof(*ips));
		if (!ips) {
			perror("realloc");
			exit(1);
		}
	}
	ips[nips++] = ip;
}

/* Reads the samples the kernel wrote to one ring buffer since the last call. */
static void drain(struct perf_event_mmap_page *mp)
{
	const char *data = (const char *)mp + getpagesize();
	uint64_t size = (uint64_t)RING_PAGES * getpagesize();
	uint64_t head = mp->data_head, tail = mp->data_tail;

	__sync_synchronize();
	while (tail < head) {
		struct perf_event_header h;
		unsigned char rec[64];

		for (size_t i = 0; i < sizeof(h); i++)
			((unsigned char *)&h)[i] = data[(tail + i) % size];
		if (h.size == 0)
			break;
		if (h.type == PERF_RECORD_SAMPLE && h.size <= sizeof(rec)) {
			uint64_t ip;

			for (size_t i = 0; i < h.size; i++)
				rec[i] = data[(tail + i) % size];
			memcpy(&ip, rec + sizeof(h), sizeof(ip));
			add_ip(ip);
		}
		tail += h.size;
	}
	__sync_synchronize();
	mp->data_tail = tail;
}

static int by_addr(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int by_count(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;

	return (y->count > x->count) - (y->count < x->count);
}

int main(int argc, char **argv)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.size = sizeof(attr),
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.sample_period = 200000,
		.sample_type = PERF_SAMPLE_IP,
		.exclude_user = 1,
		.exclude_idle = 1,
		.disabled = 1,
	};
	struct perf_event_mmap_page *rings[MAX_CPUS];
	char env[MAX_CPUS * 8] = "";
	int ncpus, status, top;
	struct sym *syms = NULL;
	size_t nsyms = 0, cap = 0;
	char line[256];
	FILE *f;
	pid_t child;

	if (argc < 3) {
		fprintf(stderr, "usage: kprof TOP PROGRAM [ARGS...]\n");
		return 2;
	}
	top = atoi(argv[1]);
	ncpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpus > MAX_CPUS)
		ncpus = MAX_CPUS;
	for (int c = 0; c < ncpus; c++) {
		int fd = syscall(SYS_perf_event_open, &attr, -1, c, -1, 0);

		if (fd < 0) {
			perror("perf_event_open");
			return 1;
		}
		rings[c] = mmap(NULL, (RING_PAGES + 1) * getpagesize(), PROT_READ | PROT_WRITE,
				MAP_SHARED, fd, 0);
		if (rings[c] == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		snprintf(env + strlen(env), sizeof(env) - strlen(env), "%s%d", c ? "," : "", fd);
	}
	setenv("KPROF_FDS", env, 1);
	child = fork();
	if (child == 0) {
		execv(argv[2], argv + 2);
		perror("execv");
		_exit(127);
	}
	while (waitpid(child, &status, WNOHANG) == 0) {
		for (int c = 0; c < ncpus; c++)
			drain(rings[c]);
		usleep(20000);
	}
	for (int c = 0; c < ncpus; c++)
		drain(rings[c]);

	f = fopen("/proc/kallsyms", "r");
	if (!f) {
		perror("/proc/kallsyms");
		return 1;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned long long addr;
		char type, name[200];

		if (sscanf(line, "%llx %c %199s", &addr, &type, name) != 3 ||
		    (type != 't' && type != 'T'))
			continue;
		if (nsyms == cap) {
			cap = cap ? cap * 2 : 65536;
			syms = realloc(syms, cap * sizeof(*syms));
			if (!syms) {
				perror("realloc");
				return 1;
			}
		}
		syms[nsyms].addr = addr;
		syms[nsyms].count = 0;
		snprintf(syms[nsyms].name, sizeof(syms[nsyms].name), "%s", name);
		nsyms++;
	}
	fclose(f);
	qsort(syms, nsyms, sizeof(*syms), by_addr);
	long unknown = 0;

	for (size_t i = 0; i < nips; i++) {
		size_t lo = 0, hi = nsyms;

		while (hi - lo > 1) {
			size_t mid = (lo + hi) / 2;

			if (syms[mid].addr <= ips[i])
				lo = mid;
			else
				hi = mid;
		}
		if (nsyms && syms[lo].addr <= ips[i] && syms[lo].addr)
			syms[lo].count++;
		else
			unknown++;
	}
	qsort(syms, nsyms, sizeof(*syms), by_count);
	printf("KPROF %zu samples (%ld unresolved), %s exited %d\n", nips, unknown, argv[2],
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	for (size_t i = 0; i < nsyms && (int)i < top && syms[i].count; i++)
		printf("KPROF %6ld %5.1f%% %s\n", syms[i].count,
		       100.0 * syms[i].count / (nips ? nips : 1), syms[i].name);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
