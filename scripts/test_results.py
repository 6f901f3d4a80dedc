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
GOOD_EXPECTED = results.read_list(os.path.join(RUNNER_DIR, "..", "expected"))
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
        # Each KUnit suite prints "# name: pass:P fail:F skip:S total:T": agree with it.
        for line in GOOD.splitlines():
            body = results.TIMESTAMP.sub("", line).strip()
            if body.startswith("# ") and ": pass:" in body and not body.startswith("# Totals"):
                name = body[2:].split(":")[0]
                fields = dict(kv.split(":") for kv in body.split(": ", 1)[1].split())
                self.assertEqual(r.suites[name][0], int(fields["pass"]), name)
                self.assertEqual(r.suites[name][1], int(fields["fail"]), name)


def kunit_case_line(name):
    """The recorded log's KUnit result line of case `name` (text after the timestamp)."""
    m = re.search(r"^\[[ 0-9.]+\] (    ok \d+ " + re.escape(name) + ")$", GOOD, re.M)
    assert m, name
    return m.group(1)


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
