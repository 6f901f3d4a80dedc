/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A tiny IGT-style harness: named subtests, each reported as a KTAP line
 * ("ok N name", "not ok N name", "ok N name # SKIP reason"). `prog -t NAME` runs one subtest,
 * `prog -l` lists them. The exit status is 1 if any subtest failed.
 *
 * Each subtest runs in a child process of its own (as kselftest_harness.h does), in a process
 * group of its own, killed after a timeout (IGT_TIMEOUT seconds, default 60): whatever it maps,
 * allocates or leaves running is torn down when it ends, failing or not, so the next subtest
 * starts clean; a subtest that crashes or overruns fails alone. A program whose subtests must
 * share process state sets `igt_fork = 0` before igt_main().
 */
#ifndef SVM_TESTS_IGT_H
#define SVM_TESTS_IGT_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

enum igt_result { IGT_PASS, IGT_FAIL, IGT_SKIP };

struct igt_subtest {
	const char *name;
	enum igt_result (*fn)(void);
};

#define IGT_REASON_LEN 256
static char igt_skip_buf[IGT_REASON_LEN];
/* Where a subtest writes why it skipped: shared with the parent when subtests fork. */
static char *igt_skip_reason = igt_skip_buf;
/* Run each subtest in a child of its own (see above). */
static int igt_fork = 1;

#define igt_info(...) printf("# " __VA_ARGS__)

#define igt_assert(cond)                                                        \
	do {                                                                    \
		if (!(cond)) {                                                  \
			printf("# %s:%d: assertion failed: %s (errno %d: %s)\n", \
			       __FILE__, __LINE__, #cond, errno, strerror(errno)); \
			return IGT_FAIL;                                        \
		}                                                               \
	} while (0)

#define igt_assert_eq(a, b)                                                     \
	do {                                                                    \
		long long _a = (long long)(a), _b = (long long)(b);             \
		if (_a != _b) {                                                 \
			printf("# %s:%d: %s == %s failed: %lld != %lld\n",      \
			       __FILE__, __LINE__, #a, #b, _a, _b);             \
			return IGT_FAIL;                                        \
		}                                                               \
	} while (0)

/* Asserts that the expression fails with -1 and errno `err`. */
#define igt_assert_errno(expr, err)                                             \
	do {                                                                    \
		errno = 0;                                                      \
		long _r = (long)(expr);                                         \
		if (_r != -1 || errno != (err)) {                               \
			printf("# %s:%d: %s: want -1/%s, got %ld/%s\n",         \
			       __FILE__, __LINE__, #expr, strerror(err), _r,    \
			       strerror(errno));                                \
			return IGT_FAIL;                                        \
		}                                                               \
	} while (0)

#define igt_skip(...)                                                           \
	do {                                                                    \
		snprintf(igt_skip_reason, IGT_REASON_LEN, __VA_ARGS__);         \
		return IGT_SKIP;                                                \
	} while (0)

/*
 * Runs one subtest in a child process; the parent kills its process group after the timeout
 * (the subtest may use alarm() itself) and, when it has ended, whatever it left running.
 */
static enum igt_result igt_run_forked(const struct igt_subtest *t)
{
	const char *env = getenv("IGT_TIMEOUT");
	int timeout = env && atoi(env) > 0 ? atoi(env) : 60;
	int status = 0, timed_out = 0;
	long waited_ms = 0;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		printf("# fork: %s\n", strerror(errno));
		return IGT_FAIL;
	}
	if (pid == 0) {
		setpgid(0, 0);
		enum igt_result r = t->fn();

		fflush(stdout);
		_exit(r == IGT_PASS ? 0 : r == IGT_SKIP ? 77 : 1);
	}
	setpgid(pid, pid);
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid || (w < 0 && errno != EINTR))
			break;
		if (waited_ms >= timeout * 1000L && !timed_out) {
			timed_out = 1;
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
		}
		usleep(10000);
		waited_ms += 10;
	}
	/* Teardown: whatever the subtest left running goes with it. */
	kill(-pid, SIGKILL);
	while (waitpid(-pid, NULL, WNOHANG) > 0)
		;
	if (timed_out) {
		printf("# %s: timed out after %d s\n", t->name, timeout);
		return IGT_FAIL;
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status) == 0 ? IGT_PASS :
		       WEXITSTATUS(status) == 77 ? IGT_SKIP : IGT_FAIL;
	printf("# %s: killed by signal %d\n", t->name, WTERMSIG(status));
	return IGT_FAIL;
}

static int igt_main(int argc, char **argv, const struct igt_subtest *tests, int count)
{
	const char *only = NULL;
	int failed = 0, run = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-l")) {
			for (int t = 0; t < count; t++)
				printf("%s\n", tests[t].name);
			return 0;
		}
		if (!strcmp(argv[i], "-t") && i + 1 < argc)
			only = argv[++i];
	}
	if (igt_fork) {
		char *shared = mmap(NULL, IGT_REASON_LEN, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

		if (shared != MAP_FAILED)
			igt_skip_reason = shared;
		else
			igt_fork = 0;
	}
	printf("KTAP version 1\n");
	if (only) {
		int found = 0;

		for (int t = 0; t < count; t++)
			found += !strcmp(tests[t].name, only);
		if (!found) {
			fprintf(stderr, "no subtest named %s\n", only);
			return 2;
		}
		printf("1..1\n");
	} else {
		printf("1..%d\n", count);
	}
	fflush(stdout);
	for (int t = 0; t < count; t++) {
		enum igt_result r;

		if (only && strcmp(tests[t].name, only))
			continue;
		run++;
		igt_skip_reason[0] = 0;
		/* Names the subtest before it runs: a deadline that stops it can say which. */
		printf("# RUN %s\n", tests[t].name);
		fflush(stdout);
		r = igt_fork ? igt_run_forked(&tests[t]) : tests[t].fn();
		if (r == IGT_PASS)
			printf("ok %d %s\n", run, tests[t].name);
		else if (r == IGT_SKIP)
			printf("ok %d %s # SKIP %s\n", run, tests[t].name, igt_skip_reason);
		else {
			printf("not ok %d %s\n", run, tests[t].name);
			failed++;
		}
		fflush(stdout);
	}
	return failed ? 1 : 0;
}

#define IGT_MAIN(table) \
	int main(int argc, char **argv) \
	{ \
		return igt_main(argc, argv, table, sizeof(table) / sizeof(table[0])); \
	}

#endif
