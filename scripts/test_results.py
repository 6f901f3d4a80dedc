#!/usr/bin/env python3
"""Tests of scripts/results.py on recorded VM logs and on variants of them that break
in each way a run can break. Run by `make check` before the VM boots."""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

RUNNER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "runner")


def recorded(name):
    with open(os.path.join(RUNNER_DIR, name), errors="replace") as f:
        return f.read()


GOOD = recorded("good.log")
# The suites a run must report are the project's list (tests/expected); the recorded log is
# re-recorded when that list grows.
# Programs listed there that the recorded log predates. Empty this set when re-recording.
NOT_YET_RECORDED = {"xe_svm_region", "xe_svm_uapi"}
GOOD_EXPECTED = [s for s in results.read_list(os.path.join(RUNNER_DIR, "..", "expected"))
                 if s not in NOT_YET_RECORDED]
KNOWN = results.read_list(os.path.join(RUNNER_DIR, "..", "known-failures"))
CONFORMANCE = [("hmm-tests/test_hmm", "hmm-tests/vgpu")]


class RecordedGoodRun(unittest.TestCase):
    def test_passes(self):
        r = results.analyse(GOOD, GOOD_EXPECTED, KNOWN, CONFORMANCE)
        self.assertEqual(r.problems, [])
        self.assertEqual(r.case_failures, [])
        self.assertGreaterEqual(r.passed, 10)
        for suite in GOOD_EXPECTED:
            self.assertIn(suite, r.suites)

    def test_counts_match_ktap_totals(self):
        r = results.analyse(GOOD, GOOD_EXPECTED)
        # Each KUnit suite prints "# name: pass:P fail:F skip:S total:T" per run (a module's
        # suites run at each insmod): agree with their sums.
        sums = {}
        for line in GOOD.splitlines():
            body = results.TIMESTAMP.sub("", line).strip()
            if body.startswith("# ") and ": pass:" in body and not body.startswith("# Totals"):
                name = body[2:].split(":")[0]
                fields = dict(kv.split(":") for kv in body.split(": ", 1)[1].split())
                p, f = sums.get(name, (0, 0))
                sums[name] = (p + int(fields["pass"]), f + int(fields["fail"]))
        for name, (p, f) in sums.items():
            self.assertEqual(r.suites[name].passed, p, name)
            self.assertEqual(r.suites[name].failed, f, name)


def kunit_case_line(name):
    """The recorded log's KUnit result line of case `name` (text after the timestamp)."""
    m = re.search(r"^\[[ 0-9.]+\] (    ok \d+ " + re.escape(name) + ")$", GOOD, re.M)
    assert m, name
    return m.group(1)


class RecordedDeadline(unittest.TestCase):
    """A recorded run (`vm.sh deadline`) whose first program hung in the kernel on purpose
    (issue 7 item 1: a GPU write to its own read-only device page, unkillable)."""

    def test_names_program_subtest_and_stack(self):
        r = results.analyse(recorded("deadline.log"), ["deadline/hang", "deadline/after"])
        found = [p for p in r.problems
                 if p.startswith("DEADLINE: deadline/hang, subtest hang-on-purpose:")]
        self.assertEqual(len(found), 1, r.problems)
        self.assertIn("GpuVm11access_user", found[0])
        self.assertTrue(any(p.startswith("UNKILLABLE: deadline/hang") for p in r.problems))
        # The run went on past the hang to its end.
        self.assertIn("deadline/after", r.suites)
        self.assertFalse([p for p in r.problems if p.startswith(("INCOMPLETE", "TIMEOUT"))])


class BrokenRuns(unittest.TestCase):
    def assert_fails_with(self, text, needle, expected=GOOD_EXPECTED):
        r = results.analyse(text, expected)
        found = [p for p in r.problems + r.case_failures if needle in p]
        self.assertTrue(found, f"no problem mentioning {needle!r} in {r.problems + r.case_failures}")

    def test_failing_kunit_case(self):
        line = kunit_case_line("last_put_destroys_once")
        text = GOOD.replace(line, line.replace("ok", "not ok", 1), 1)
        self.assertTrue(text != GOOD)
        self.assert_fails_with(text, "drm_pagemap_refcount: last_put_destroys_once")

    def test_failing_userspace_subtest(self):
        text = GOOD.replace("ok 3 query-device", "not ok 3 query-device", 1)
        self.assertTrue(text != GOOD)
        self.assert_fails_with(text, "vgpu_basic: query-device")

    def test_program_exit_status(self):
        text = GOOD.replace("SVM-TEST-END module_lifecycle rc=0", "SVM-TEST-END module_lifecycle rc=139", 1)
        self.assertTrue(text != GOOD)
        self.assert_fails_with(text, "module_lifecycle exited with status 139")

    def test_splat(self):
        splat = ("[   12.000000] ------------[ cut here ]------------\n"
                 "[   12.000001] WARNING: CPU: 1 PID: 77 at mm/memremap.c:10 memunmap_pages+0x1/0x2\n")
        text = GOOD.replace("SVM-DMESG-END", splat + "SVM-DMESG-END", 1)
        self.assert_fails_with(text, "kernel WARNING")

    def test_lockdep(self):
        text = GOOD.replace("SVM-DMESG-END",
                            "[    9.1] WARNING: possible circular locking dependency detected\n"
                            "SVM-DMESG-END", 1)
        self.assert_fails_with(text, "SPLAT")

    def test_kmemleak(self):
        text = GOOD.replace("SVM-KMEMLEAK-END",
                            "unreferenced object 0xffff888004c1e000 (size 64):\n"
                            "SVM-KMEMLEAK-END", 1)
        self.assert_fails_with(text, "kmemleak")

    def test_missing_suite(self):
        self.assert_fails_with(GOOD, "no_such_suite did not run", GOOD_EXPECTED + ["no_such_suite"])

    def test_crash_mid_suite(self):
        # Cut the log right after the first KUnit case of a suite: plan unmet, no end marker.
        cut = GOOD.index(kunit_case_line("last_put_destroys_once"))
        cut = GOOD.index("\n", cut) + 1
        text = GOOD[:cut]
        r = results.analyse(text, GOOD_EXPECTED)
        self.assertTrue(r.problems)
        self.assert_fails_with(text, "INCOMPLETE")

    def test_missing_cases_in_plan(self):
        lines = GOOD.splitlines(keepends=True)
        gone = kunit_case_line("get_unless_zero_fails_after_zero")
        text = "".join(l for l in lines if gone not in l)
        self.assertTrue(text != GOOD)
        self.assert_fails_with(text, "MISSING: drm_pagemap_refcount")

    def test_timeout(self):
        text = GOOD[:GOOD.index("SVM-TEST-BEGIN module_lifecycle")] + "SVM-VM-TIMEOUT after 900s\n"
        self.assert_fails_with(text, "TIMEOUT")
        self.assert_fails_with(text, "module_lifecycle did not run")

    def vgpu_case_failing(self, case):
        """The recorded log with `case` of hmm-tests/vgpu failing."""
        block = GOOD[GOOD.index("SVM-TEST-BEGIN hmm-tests/vgpu"):]
        line = re.search(r"^ok (\d+) " + re.escape(case) + "$", block, re.M).group(0)
        text = GOOD.replace(block, block.replace(line, "not " + line, 1), 1)
        self.assertTrue(text != GOOD)
        return text

    def test_known_failure_is_not_a_failure(self):
        case = "hmm.hmm_device_private.exclusive"
        text = self.vgpu_case_failing(case)
        r = results.analyse(text, GOOD_EXPECTED, KNOWN + [f"hmm-tests/vgpu: {case}"], CONFORMANCE)
        self.assertEqual(r.problems, [])
        self.assertEqual(r.failed, 0)
        self.assertEqual(len(r.known_failures), 1)
        self.assertEqual(r.outcomes["hmm-tests/vgpu"][case], "known")

    def test_known_failure_unlisted_fails(self):
        case = "hmm.hmm_device_private.exclusive"
        text = self.vgpu_case_failing(case)
        self.assert_fails_with(text, f"hmm-tests/vgpu: {case}")
        r = results.analyse(text, GOOD_EXPECTED, KNOWN, CONFORMANCE)
        self.assertTrue(any(p.startswith(f"CONFORMANCE: {case} ") for p in r.problems), r.problems)

    def test_known_failure_that_passes(self):
        r = results.analyse(GOOD, GOOD_EXPECTED, KNOWN + ["hmm-tests/vgpu: hmm.hmm_device_private.migrate"])
        self.assertTrue(any("XPASS" in p and "migrate" in p for p in r.problems), r.problems)

    def test_conformance_regression(self):
        # A case passing against test_hmm but skipped against ours fails the run.
        block = GOOD[GOOD.index("SVM-TEST-BEGIN hmm-tests/vgpu"):]
        line = re.search(r"^ok (\d+) hmm\.hmm_device_private\.migrate_fault$", block, re.M).group(0)
        text = GOOD.replace(block, block.replace(line, line + " # SKIP no", 1), 1)
        self.assertTrue(text != GOOD)
        r = results.analyse(text, GOOD_EXPECTED, KNOWN, CONFORMANCE)
        self.assertTrue(any(p.startswith("CONFORMANCE: hmm.hmm_device_private.migrate_fault")
                            for p in r.problems), r.problems)

    def deadline_log(self, program, keep_through, stack_top="_RNvMs_NtCsX_4vgpu2vmNtB4_5GpuVm11access_user"):
        """The recorded log cut inside `program`'s output after the line `keep_through`, then
        what vm-init.sh prints when that program misses its deadline and is killed."""
        begin = GOOD.index(f"SVM-TEST-BEGIN {program}\n")
        cut = GOOD.index(keep_through + "\n", begin) + len(keep_through) + 1
        end = re.compile(f"^SVM-TEST-END {re.escape(program)} rc=0.*$", re.M).search(GOOD, begin).start()
        rest = GOOD[GOOD.index("\n", end) + 1:]
        dump = (f"SVM-DEADLINE {program} 60s: still running, kernel stacks follow, then SIGKILL\n"
                f"SVM-STACK 71/71 {program.split('/')[0]} state R sample 1\n"
                f"SVM-STACK   [<0>] {stack_top}+0x1c4/0x9a0 [vgpu]\n"
                "SVM-STACK   [<0>] drm_ioctl+0x4e1/0x8a0\n"
                "SVM-STACK   [<0>] __x64_sys_ioctl+0x12d/0x190\n"
                f"SVM-TEST-END {program} rc=137 secs=61\n")
        return GOOD[:cut] + dump + rest

    def test_deadline_names_announced_subtest(self):
        # igt.h announcing "# RUN name" before each subtest: that subtest is named.
        text = self.deadline_log("vgpu_basic", "ok 2 query-size-probe").replace(
            "ok 2 query-size-probe\n", "ok 2 query-size-probe\n# RUN query-device\n", 1)
        r = results.analyse(text, GOOD_EXPECTED, KNOWN, CONFORMANCE)
        found = [p for p in r.problems if p.startswith("DEADLINE: vgpu_basic, subtest query-device:")]
        self.assertTrue(found, r.problems)
        self.assertIn("GpuVm11access_user", found[0])
        self.assertIn("killed", found[0])

    def test_deadline_names_next_subtest(self):
        # No announcement: the subtest after the last result (by number of the plan).
        text = self.deadline_log("vgpu_basic", "ok 2 query-size-probe")
        r = results.analyse(text, GOOD_EXPECTED, KNOWN, CONFORMANCE)
        self.assertTrue(any(p.startswith("DEADLINE: vgpu_basic, subtest 3 of 14, the one after "
                                         "query-size-probe:") for p in r.problems), r.problems)
        self.assertTrue(any("MISSING: vgpu_basic" in p for p in r.problems), r.problems)

    def test_deadline_kselftest_subtest(self):
        text = self.deadline_log("hmm-tests/vgpu",
                                 "#  RUN           hmm.hmm_device_private.anon_write_child ...")
        r = results.analyse(text, GOOD_EXPECTED, KNOWN, CONFORMANCE)
        self.assertTrue(any(p.startswith("DEADLINE: hmm-tests/vgpu, subtest "
                                         "hmm.hmm_device_private.anon_write_child:")
                            for p in r.problems), r.problems)

    def test_deadline_unkillable(self):
        text = self.deadline_log("vgpu_vm", "1..16").replace(
            "SVM-TEST-END vgpu_vm rc=137",
            "SVM-DEADLINE-UNKILLABLE vgpu_vm pid 71 survived SIGKILL for 10s, stacks follow\n"
            "SVM-STACK 71/71 vgpu_vm state R sample 1\n"
            "SVM-TEST-END vgpu_vm rc=137", 1)
        r = results.analyse(text, GOOD_EXPECTED, KNOWN, CONFORMANCE)
        self.assertTrue(any(p.startswith("DEADLINE: vgpu_vm, its first subtest of") for p in r.problems),
                        r.problems)
        self.assertTrue(any(p.startswith("UNKILLABLE: vgpu_vm") for p in r.problems), r.problems)

    def test_deadline_budget_spent(self):
        begin = GOOD.index("SVM-TEST-BEGIN vgpu_stress\n")
        end = GOOD.index("SVM-TEST-END vgpu_stress rc=0")
        end = GOOD.index("\n", end) + 1
        text = GOOD[:begin] + ("SVM-TEST-BEGIN vgpu_stress\n"
                               "SVM-DEADLINE vgpu_stress 0s: the run's budget of 480s is spent, not run\n"
                               "SVM-TEST-END vgpu_stress rc=124 secs=0\n") + GOOD[end:]
        self.assert_fails_with(text, "DEADLINE: vgpu_stress")

    def test_stack_lines_are_not_splats(self):
        # Stack dumps mention kasan_ and BUG-like symbol names; only the deadline counts.
        text = self.deadline_log("vgpu_basic", "ok 2 query-size-probe", stack_top="kasan_check_range")
        r = results.analyse(text, GOOD_EXPECTED, KNOWN, CONFORMANCE)
        self.assertFalse([p for p in r.problems if p.startswith("SPLAT")], r.problems)

    def test_kasan_report(self):
        report = (
            "[   41.100000] ==================================================================\n"
            "[   41.100001] BUG: KASAN: slab-use-after-free in _RNvNtCs1_4vgpu2vm11access_user+0x1c4/0x9a0 [vgpu]\n"
            "[   41.100002] Read of size 8 at addr ffff888012345678 by task vgpu_fuzz/123\n"
            "[   41.100003] CPU: 1 UID: 0 PID: 123 Comm: vgpu_fuzz Tainted: G           O\n"
            "[   41.100004] Call Trace:\n"
            "[   41.100005]  <TASK>\n"
            "[   41.100006]  kasan_report+0xe0/0x110\n"
            "[   41.100007] Allocated by task 120:\n"
            "[   41.100008] Freed by task 121:\n"
            "[   41.100009] ==================================================================\n")
        text = GOOD.replace("SVM-DMESG-END", report + "SVM-DMESG-END", 1)
        r = results.analyse(text, GOOD_EXPECTED, KNOWN, CONFORMANCE)
        splats = [p for p in r.problems if p.startswith("SPLAT")]
        self.assertEqual(len(splats), 1, r.problems)
        self.assertIn("KASAN: slab-use-after-free", splats[0])

    def test_kasan_report_without_bug_line(self):
        # Reports that reach the log without their BUG line (a wild access, a truncated
        # console) still name KASAN.
        text = GOOD.replace("SVM-DMESG-END",
                            "[   41.2] KASAN: null-ptr-deref in range [0x0000000000000008-0x000000000000000f]\n"
                            "SVM-DMESG-END", 1)
        self.assert_fails_with(text, "sanitizer report")

    def test_kasan_boot_banner_is_not_a_report(self):
        text = GOOD.replace("SVM-DMESG-BEGIN\n", "SVM-DMESG-BEGIN\n"
                            "[    0.000000] kasan: KernelAddressSanitizer initialized (generic)\n", 1)
        r = results.analyse(text, GOOD_EXPECTED, KNOWN, CONFORMANCE)
        self.assertEqual(r.problems, [])

    def test_reference_timeout_is_a_skip(self):
        # The C reference's own harness timing a case out (KASAN, loaded host) is no failure
        # of ours; a timeout in our run is.
        case = "hmm.hmm_device_private.migrate_remap_fault"
        for program, fails in (("hmm-tests/test_hmm", False), ("hmm-tests/vgpu", True)):
            block = GOOD[GOOD.index(f"SVM-TEST-BEGIN {program}"):]
            line = re.search(r"^ok (\d+) " + re.escape(case) + "$", block, re.M).group(0)
            text = GOOD.replace(block, block.replace(
                line, "# migrate_remap_fault: Test terminated by timeout\n"
                "#          FAIL  " + case + "\nnot " + line, 1), 1)
            self.assertTrue(text != GOOD)
            r = results.analyse(text, GOOD_EXPECTED, KNOWN, CONFORMANCE)
            if fails:
                self.assertTrue(any(case in p for p in r.case_failures + r.problems), r.problems)
            else:
                self.assertEqual(r.problems + r.case_failures, [])
                self.assertEqual(r.outcomes[program][case], "skip")
                self.assertTrue(any("REFERENCE TIMEOUT" in n for n in r.notes))

    def test_summary_line_counts_problems(self):
        text = GOOD.replace("SVM-RUN-END", "", 1)
        r = results.analyse(text, GOOD_EXPECTED, KNOWN, CONFORMANCE)
        self.assertEqual(r.failed + len(r.problems), 1)


if __name__ == "__main__":
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=0)
    result = runner.run(unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__]))
    print(f"runner self-tests: {result.testsRun - len(result.failures) - len(result.errors)} passed, "
          f"{len(result.failures) + len(result.errors)} failed")
    sys.exit(0 if result.wasSuccessful() else 1)
