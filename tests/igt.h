/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A tiny IGT-style harness: named subtests, each reported as a KTAP line
 * ("ok N name", "not ok N name", "ok N name # SKIP reason"). `prog -t NAME` runs one subtest,
 * `prog -l` lists them. The exit status is 1 if any subtest failed.
 */
#ifndef SVM_TESTS_IGT_H
#define SVM_TESTS_IGT_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum igt_result { IGT_PASS, IGT_FAIL, IGT_SKIP };

struct igt_subtest {
	const char *name;
	enum igt_result (*fn)(void);
};

static char igt_skip_reason[256];

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
		snprintf(igt_skip_reason, sizeof(igt_skip_reason), __VA_ARGS__); \
		return IGT_SKIP;                                                \
	} while (0)

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
		r = tests[t].fn();
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
