#!/usr/bin/env python3
"""Reads a test VM's serial log and decides whether the run passed.

The log holds, in order: the boot, test programs framed by
``SVM-TEST-BEGIN name`` / ``SVM-TEST-END name rc=N`` (each printing KTAP or TAP),
the kernel log between ``SVM-DMESG-BEGIN`` / ``SVM-DMESG-END`` (KUnit's KTAP, one
document per boot-time run and per module load), a kmemleak report, and
``SVM-RUN-END``. A test program that overran its deadline in the VM is marked by
``SVM-DEADLINE name ...`` (then its tasks' kernel stacks as ``SVM-STACK`` lines, then
``SVM-DEADLINE-UNKILLABLE name ...`` if SIGKILL did not end it).

The run fails, printing the offending lines, on: a failed test case; a suite or
program whose plan (``1..N``) names more cases than reported (crash or hang
mid-suite); a suite or program listed in the expected file but absent; a test
program exiting non-zero; a test program that missed its deadline (named with the
subtest it was in: the last one its output started, or the one after the last result);
any kernel splat (BUG, WARNING, Oops, lockdep, KASAN,
kmemleak, hung task, panic...) anywhere in the log; a run that did not reach
``SVM-RUN-END`` (timeout or crash).

Known failures (``--known-failures``: lines ``suite: case  # why``) count as such, not
as failures; one that passes is reported, so that the list never outlives its reason.
A conformance pair (``--conformance REFERENCE=OURS``) prints both programs' result of
every case side by side, and fails the run for each case that passes against the
reference but not against ours (unless a known failure). A reference case that its own
harness timed out counts as skipped (the reference is there for comparison only).

The last line printed is
``N passed, N failed, N skipped, N known failures``.
"""

import argparse
import dataclasses
import enum
import re
import sys

TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
RESULT = re.compile(r"^(not ok|ok) (\d+)(?: - | )?([^#]*?)\s*(?:#\s*(SKIP|skip|TODO)\b(.*))?$")
PLAN = re.compile(r"^1\.\.(\d+)")
SUBTEST = re.compile(r"^# Subtest: (\S+)")
# A subtest announcing its start: kselftest's "#  RUN  name ..." and igt.h's "# RUN name".
RUN = re.compile(r"^#\s+RUN\s+(\S+)")
DEADLINE = re.compile(r"^SVM-DEADLINE (\S+) (\d+)s")
UNKILLABLE = re.compile(r"^SVM-DEADLINE-UNKILLABLE (\S+)")
STACK_FRAME = re.compile(r"^SVM-STACK\s+\[<[0-9a-f]+>\] (\S+)")

SPLATS = [
    (re.compile(r"\bBUG: "), "kernel BUG"),
    (re.compile(r"\bWARNING: "), "kernel WARNING"),
    (re.compile(r"\bOops\b"), "Oops"),
    (re.compile(r"general protection fault"), "general protection fault"),
    (re.compile(r"Kernel panic"), "kernel panic"),
    (re.compile(r"possible circular locking dependency|possible recursive locking|"
                r"inconsistent lock state|suspicious RCU usage|bad unlock balance|"
                r"DEBUG_LOCKS_WARN_ON|INFO: trying to register non-static key|"
                r"held when returning to user space|lock held at task exit|"
                r"Looking for class .* but found a different class"), "lockdep report"),
    (re.compile(r"KASAN|UBSAN"), "sanitizer report"),
    (re.compile(r"kmemleak: \d+ new suspected memory leaks|^unreferenced object"), "kmemleak leak"),
    (re.compile(r"blocked for more than \d+ seconds|hung_task"), "hung task"),
    (re.compile(r"soft lockup|hard LOCKUP|rcu_sched detected stalls|rcu: INFO:"), "lockup/stall"),
    (re.compile(r"^SVM-ERROR"), "runner error"),
]


class Outcome(str, enum.Enum):
    """What one test case came to."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    KNOWN = "known"  # a failure listed in the known failures

    def __str__(self):
        return self.value

    def __format__(self, spec):
        return format(self.value, spec)


@dataclasses.dataclass
class Counts:
    """Cases of one suite or program, by outcome."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    known: int = 0


class Node:
    """A KTAP suite (or test program) being read."""

    def __init__(self, name, indent):
        self.name = name
        self.indent = indent
        self.plan = None
        self.results = 0


class Report:
    def __init__(self, known=()):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.known = set(known)  # "suite: case" that are expected to fail
        self.known_failures = []
        self.problems = []  # anything wrong besides a failed case
        self.case_failures = []
        self.notes = []  # printed, not failures
        self.suites = {}  # name -> Counts
        self.outcomes = {}  # suite -> {case: Outcome}

    def counts(self, suite):
        """The counts of `suite`, created empty on first use."""
        return self.suites.setdefault(suite, Counts())

    def case(self, suite, name, outcome):
        counts = self.counts(suite)
        key = f"{suite}: {name}"
        if key in self.known:
            if outcome is Outcome.FAIL:
                outcome = Outcome.KNOWN
            elif outcome is Outcome.PASS:
                self.problems.append(f"XPASS: {key} passes now: take it off the known failures")
        self.outcomes.setdefault(suite, {})[name] = outcome
        if outcome is Outcome.KNOWN:
            counts.known += 1
            self.known_failures.append(f"KNOWN FAILURE: {key}")
        elif outcome is Outcome.PASS:
            self.passed += 1
            counts.passed += 1
        elif outcome is Outcome.SKIP:
            self.skipped += 1
            counts.skipped += 1
        else:
            self.failed += 1
            counts.failed += 1
            self.case_failures.append(f"FAILED: {suite}: {name}")

    def problem(self, text):
        self.problems.append(text)


def parse_ktap(lines, report, top_name=None):
    """Reads KTAP/TAP lines (indentation kept). Leaf results count as cases of the
    innermost suite; a result line closing a nested suite checks its plan instead."""
    stack = []
    if top_name is not None:
        stack.append(Node(top_name, 0))
    pending_name = {}  # indent -> suite name announced by "# Subtest:"

    def close(node):
        if node.plan is not None and node.results < node.plan:
            report.problem(f"MISSING: {node.name}: {node.plan - node.results} of "
                           f"{node.plan} cases never reported (crash or hang?)")

    for raw in lines:
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        if not line:
            continue
        m = SUBTEST.match(line)
        if m:
            pending_name[indent] = m.group(1)
            continue
        m = PLAN.match(line)
        if m:
            while stack and stack[-1].indent > indent:
                close(stack.pop())
            if stack and stack[-1].indent == indent and stack[-1].plan is None:
                stack[-1].plan = int(m.group(1))
            elif indent in pending_name:
                node = Node(pending_name.pop(indent), indent)
                node.plan = int(m.group(1))
                stack.append(node)
            continue
        m = RESULT.match(line)
        if not m:
            continue
        status, name, directive = m.group(1), m.group(3).strip(), m.group(4)
        # A result at a shallower indent than an open suite closes that suite.
        closed = None
        while stack and stack[-1].indent > indent:
            closed = stack.pop()
            close(closed)
        parent = stack[-1] if stack and stack[-1].indent == indent else None
        if parent is not None:
            parent.results += 1
        if closed is not None and closed.name == name:
            # The suite's own verdict; its cases were counted one by one. A failed
            # suite with no failed case means it crashed or failed to init.
            if status == "not ok" and not report.suites.get(name, Counts()).failed:
                report.problem(f"FAILED: suite {name} reported failure")
            continue
        if parent is None:
            # A bare top-level result with no suite around it: a document-level
            # "ok N suite" whose suite had no cases printed, or stray output.
            if status == "not ok":
                report.problem(f"FAILED: {name}")
            continue
        if directive and directive.lower() == "skip":
            outcome = Outcome.SKIP
        elif status == "ok":
            outcome = Outcome.PASS
        else:
            outcome = Outcome.FAIL
        report.case(parent.name, name, outcome)
    while stack:
        close(stack.pop())


def running_subtest(block):
    """Which subtest a test program was in when its output `block` stopped: the last one it
    announced (RUN) after its last result, else the one after its last result."""
    last_result, last_number, plan, started = None, 0, None, None
    for raw in block:
        line = raw.rstrip()
        m = PLAN.match(line)
        if m and plan is None:
            plan = int(m.group(1))
            continue
        m = RESULT.match(line)
        if m:
            last_result, last_number, started = m.group(3).strip(), int(m.group(2)), None
            continue
        m = RUN.match(line)
        if m:
            started = m.group(1)
    if started:
        return f"subtest {started}"
    of = f" of {plan}" if plan else ""
    if last_result:
        return f"subtest {last_number + 1}{of}, the one after {last_result}"
    return f"its first subtest{of}" if plan else "before any output"


def stuck_frames(lines, start):
    """Where each stuck task was, from the stack samples after line `start`: its innermost
    frame in one of our (or any) modules, else its innermost frame."""
    frames, task = [], []

    def flush():
        if task:
            ours = [f for f in task if f.endswith("]")]
            frame = (ours or task)[0]
            if frame not in frames:
                frames.append(frame)
        task.clear()

    for line in lines[start + 1:]:
        if not line.startswith("SVM-STACK"):
            break
        if re.match(r"^SVM-STACK \d+/\d+ ", line):
            flush()
            continue
        m = STACK_FRAME.match(line)
        if m:
            module = re.search(r"(\[\w+\])\s*$", line)
            task.append(m.group(1).split("+")[0] + (" " + module.group(1) if module else ""))
    flush()
    return frames


def excuse_reference_timeouts(report, program, block):
    """The reference driver of a conformance pair (the C test_hmm) is there for comparison:
    a case of it that its own harness ended for running too long (kselftest's "Test
    terminated by timeout", under KASAN and a loaded host) counts as skipped, not failed."""
    timed_out = {m.group(1) for m in (re.match(r"^# (\S+): Test terminated by timeout", l)
                                      for l in block) if m}
    outcomes = report.outcomes.get(program, {})
    counts = report.counts(program)
    for case, outcome in list(outcomes.items()):
        short = case.rsplit(".", 1)[-1]
        if outcome is not Outcome.FAIL or not (case in timed_out or short in timed_out):
            continue
        outcomes[case] = Outcome.SKIP
        report.failed -= 1
        report.skipped += 1
        counts.failed -= 1
        counts.skipped += 1
        report.case_failures.remove(f"FAILED: {program}: {case}")
        report.notes.append(f"REFERENCE TIMEOUT: {program}: {case} ran past its harness's "
                            f"limit; counted as skipped")


def analyse(text, expected, known=(), conformance=()):
    report = Report(known)
    references = {reference for reference, _ in conformance}
    lines = text.splitlines()

    for i, line in enumerate(lines):
        body = TIMESTAMP.sub("", line)
        for pattern, what in SPLATS:
            if pattern.search(body):
                report.problem(f"SPLAT ({what}), log line {i + 1}: {body.strip()}")
                break

    # Test programs.
    current, block = None, []
    for i, line in enumerate(lines):
        m = DEADLINE.match(line)
        if m:
            where = running_subtest(block) if current == m.group(1) else "the program"
            frames = stuck_frames(lines, i)
            top = f"; stuck in {', '.join(frames[:4])}" if frames else ""
            report.problem(f"DEADLINE: {m.group(1)}, {where}: still running after "
                           f"{m.group(2)} s, killed (kernel stacks at log line {i + 1}{top})")
            continue
        m = UNKILLABLE.match(line)
        if m:
            report.problem(f"UNKILLABLE: {m.group(1)} survived SIGKILL (log line {i + 1})")
            continue
        if line.startswith("SVM-STACK"):
            continue
        if line.startswith("SVM-TEST-BEGIN "):
            current, block = line.split(" ", 1)[1].strip(), []
        elif line.startswith("SVM-TEST-END ") and current is not None:
            parse_ktap(block, report, top_name=current)
            if current in references:
                excuse_reference_timeouts(report, current, block)
            m = re.search(r"rc=(\d+)", line)
            rc = int(m.group(1)) if m else -1
            counts = report.counts(current)
            if rc != 0 and not counts.failed and not counts.known:
                report.problem(f"FAILED: {current} exited with status {rc}")
            current = None
        elif current is not None:
            block.append(line)
    if current is not None:
        parse_ktap(block, report, top_name=current)
        report.problem(f"MISSING: {current} never finished (crash or timeout)")

    # KUnit, from the kernel log.
    in_dmesg, dmesg = False, []
    for line in lines:
        if line.startswith("SVM-DMESG-BEGIN"):
            in_dmesg = True
        elif line.startswith("SVM-DMESG-END"):
            in_dmesg = False
        elif in_dmesg:
            dmesg.append(TIMESTAMP.sub("", line))
    parse_ktap(dmesg, report)

    for reference, ours in conformance:
        ref = report.outcomes.get(reference, {})
        got = report.outcomes.get(ours, {})
        for case, outcome in ref.items():
            if outcome is Outcome.PASS and got.get(case) not in (Outcome.PASS, Outcome.KNOWN):
                report.problem(f"CONFORMANCE: {case} passes against {reference} but is "
                               f"{got.get(case, 'missing')} against {ours}")

    for name in expected:
        if name not in report.suites:
            report.problem(f"MISSING: expected suite or program {name} did not run")
    if not any(l.startswith("SVM-RUN-END") for l in lines):
        if any(l.startswith("SVM-VM-TIMEOUT") for l in lines):
            report.problem("TIMEOUT: the VM was killed before the run ended")
        else:
            report.problem("INCOMPLETE: the VM stopped before the run ended (crash?)")
    return report


def read_list(path):
    """Non-empty lines of `path`, comments (from '#') removed."""
    with open(path) as f:
        return [l.split("#")[0].strip() for l in f if l.split("#")[0].strip()]


def print_side_by_side(report, reference, ours):
    ref = report.outcomes.get(reference, {})
    got = report.outcomes.get(ours, {})
    cases = list(ref) + [c for c in got if c not in ref]
    width = max([len(c) for c in cases] + [4])
    print(f"  {'case':<{width}}  {reference:<20}  {ours}")
    for case in cases:
        print(f"  {case:<{width}}  {ref.get(case, '-'):<20}  {got.get(case, '-')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--expected", help="file listing suites/programs that must run")
    ap.add_argument("--known-failures", help="file listing 'suite: case' expected to fail")
    ap.add_argument("--conformance", action="append", default=[], metavar="REFERENCE=OURS",
                    help="every case passing in REFERENCE must pass in OURS")
    args = ap.parse_args()
    with open(args.log, errors="replace") as f:
        text = f.read()
    expected = read_list(args.expected) if args.expected else []
    known = read_list(args.known_failures) if args.known_failures else []
    conformance = [tuple(pair.split("=", 1)) for pair in args.conformance]
    report = analyse(text, expected, known, conformance)
    for suite, c in sorted(report.suites.items()):
        verdict = "FAIL" if c.failed else "ok  "
        print(f"  {verdict} {suite}: {c.passed} passed, {c.failed} failed, {c.skipped} skipped, "
              f"{c.known} known failures")
    for reference, ours in conformance:
        print_side_by_side(report, reference, ours)
    for line in report.notes + report.known_failures + report.case_failures + report.problems:
        print(line)
    # Each problem that is not a failed case (splat, missing suite, timeout...) counts as one
    # failure, so the summary can never read "0 failed" for a broken run.
    failed = report.failed + len(report.problems)
    print(f"{report.passed} passed, {failed} failed, {report.skipped} skipped, "
          f"{len(report.known_failures)} known failures")
    return 1 if report.problems or report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
