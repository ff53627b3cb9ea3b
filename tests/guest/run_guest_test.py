#!/usr/bin/env python3
"""Runs one self-checking test guest under a machine program (build/nestvm or
qemu-system-x86_64) with QEMU's command line and checks what it reports.

The guest prints "PASS: ...", "FAIL: ...: why", "SKIP: ...: why" lines and a final
"SUMMARY: <name>: P passed, F failed, S skipped", then writes its exit code to isa-debug-exit,
which both programs turn into the exit status (code << 1) | 1. The test passes when the exit
status is the expected one (1 unless told), no FAIL line appeared, the summary says at least one
check passed and none failed, and every --expect pattern matched a line. See docs/guest-tests.md.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import time

# The machine both programs are asked for, as the QEMU command line spells it.
COMMON_ARGS = ["-accel", "tcg", "-machine", "pc", "-nodefaults", "-display", "none", "-serial", "stdio",
               "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--program", required=True, help="nestvm or qemu-system-x86_64")
    ap.add_argument("--kernel", help="the image; without it nestvm runs its built-in demo")
    ap.add_argument("--accel", help="an -accel after the common one (nestvm,ept=off: shadow paging)")
    ap.add_argument("--append", help="-append text; @EPOCH@ becomes the host's Unix time")
    ap.add_argument("--initrd")
    ap.add_argument("--smp")
    ap.add_argument("-m", dest="mem")
    ap.add_argument("--cpu", help="-cpu model and features")
    ap.add_argument("--device", action="append", default=[], help="an extra -device")
    ap.add_argument("--expect-exit", type=int, default=1)
    ap.add_argument("--expect", action="append", default=[], help="a regex some output line must match")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--level", help="nestvm's --level (2: under the minivisor; nestvm only)")
    a = ap.parse_args()

    cmd = [a.program] + COMMON_ARGS
    if a.accel:
        cmd += ["-accel", a.accel]
    if a.level:
        cmd += ["--level", a.level]
    if a.kernel:
        cmd += ["-kernel", a.kernel]
    if a.append is not None:
        cmd += ["-append", a.append.replace("@EPOCH@", str(int(time.time())))]
    if a.initrd:
        cmd += ["-initrd", a.initrd]
    if a.smp:
        cmd += ["-smp", a.smp]
    if a.mem:
        cmd += ["-m", a.mem]
    if a.cpu:
        cmd += ["-cpu", a.cpu]
    for d in a.device:
        cmd += ["-device", d]
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)

    start = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=a.timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        sys.stdout.write(out)
        sys.stdout.write((e.stderr or b"").decode(errors="replace"))
        print(f"guest test: FAILED: no exit within {a.timeout:g} s")
        return 1
    except OSError as e:
        print(f"guest test: FAILED: cannot run {a.program}: {e}")
        return 1
    elapsed = time.monotonic() - start
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    sys.stdout.write(out)
    if err:
        sys.stdout.write("--- stderr ---\n" + err)

    problems = []
    if p.returncode != a.expect_exit:
        problems.append(f"exit status {p.returncode}, want {a.expect_exit}")
    lines = [l.rstrip("\r") for l in out.split("\n")]
    fails = [l for l in lines if l.startswith("FAIL:")]
    if fails:
        problems.append(f"{len(fails)} FAIL line(s)")
    summary = [m for m in (re.match(r"SUMMARY: .*: (\d+) passed, (\d+) failed, (\d+) skipped$", l) for l in lines) if m]
    if not summary:
        problems.append("no SUMMARY line")
    else:
        passed, failed = int(summary[-1].group(1)), int(summary[-1].group(2))
        if failed or passed == 0:
            problems.append(f"summary: {passed} passed, {failed} failed")
    for pattern in a.expect:
        if not any(re.search(pattern, l) for l in lines):
            problems.append(f"no line matches /{pattern}/")
    if problems:
        print(f"guest test: FAILED ({elapsed:.2f} s): " + "; ".join(problems))
        return 1
    print(f"guest test: ok ({elapsed:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
