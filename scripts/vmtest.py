#!/usr/bin/env python3
"""Run irqlock's kernel tests (or any command) inside a VM on a real kernel.

Boots a kernel with virtme-ng under TCG, sharing this machine's root file
system read-only, so the guest runs this checkout and its venv as root:

    scripts/vmtest.py                      # kernel tests on Debian's stock kernel
    scripts/vmtest.py --kernel irqtrace    # ... on the preemptirq kernel (../shared/kernels)
    scripts/vmtest.py --kernel rt          # ... on Debian's PREEMPT_RT kernel
    scripts/vmtest.py --kernel 6.12-rt     # ... on its 6.12 series (also 6.12, cloud, 6.12-cloud)
    scripts/vmtest.py --kernel /boot/vmlinuz-X -- irqlock check
    scripts/vmtest.py -- bash -c 'irqlock check -j'

Before booting it builds the fixture module against the guest kernel's headers.
Inside, it loads the fixture, runs the command under a timeout, and saves the
guest's dmesg.  The run fails if the command fails, if the guest's dmesg has
a BUG: or WARNING: line, or if the VM does not finish in time.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
SHARED_KERNELS = ROOT.parent / "shared" / "kernels"
IRQTRACE_DIR = SHARED_KERNELS / "irqtrace-6.1"
# A kernel oops or warning in the guest fails the run even if the tests passed.
DMESG_FAILURE = re.compile(r"\b(BUG:|WARNING:)")
# The longest shard takes 1153 s here and ran out of 1800 s in CI, whose machine emulates
# about 1.8 times slower: the guest gets room for that.
GUEST_TIMEOUT_S = 3000
HOST_MARGIN_S = 120


def log(message: str) -> None:
    print(f"vmtest: {message}", file=sys.stderr, flush=True)


def debian_kernel_release(package: str = "linux-image-amd64") -> str:
    """Release of the kernel a Debian metapackage points to (e.g. 6.1.0-56-amd64 for
    linux-image-amd64, 6.1.0-56-rt-amd64 for linux-image-rt-amd64)."""
    depends = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}", package],
                             capture_output=True, text=True).stdout
    match = re.search(r"linux-image-(\S+?)(?:-unsigned)?\b[ ,(]", depends + " ")
    if not match:
        raise SystemExit(f"vmtest: cannot tell the kernel from {package} (scripts/setup.sh "
                         f"installs it): {depends!r}")
    return match.group(1)


def install_irqtrace_kernel() -> str:
    """Install the preemptirq test kernel's packages from ../shared/kernels; returns its release."""
    debs = sorted(IRQTRACE_DIR.glob("linux-*.deb"))
    if not debs:
        raise SystemExit(f"vmtest: no irqtrace kernel packages in {IRQTRACE_DIR} "
                         "(build them with its build.sh, see docs/exact-kernel.md)")
    image = next(d for d in debs if d.name.startswith("linux-image-"))
    release = image.name.removeprefix("linux-image-").split("_")[0]
    if not Path(f"/boot/vmlinuz-{release}").exists() or not Path(f"/lib/modules/{release}/build").exists():
        log(f"installing {', '.join(d.name for d in debs)}")
        subprocess.run(["dpkg", "-i", *map(str, debs)], check=True, stdout=subprocess.DEVNULL)
    return release


# The Debian 12 kernels the tests boot, by name: the metapackage each follows (scripts/setup.sh
# installs them with their headers)
DEBIAN_KERNELS = {
    "stock": "linux-image-amd64",             # 6.1, the reference
    "rt": "linux-image-rt-amd64",             # 6.1 PREEMPT_RT
    "cloud": "linux-image-cloud-amd64",       # 6.1 cloud: what Debian's cloud images boot
    "6.12": "linux-image-6.12-amd64",         # 6.12, Debian 13's series
    "6.12-rt": "linux-image-6.12-rt-amd64",
    "6.12-cloud": "linux-image-6.12-cloud-amd64",
}


def resolve_kernel(choice: str) -> tuple[Path, str]:
    if choice in DEBIAN_KERNELS:
        release = debian_kernel_release(DEBIAN_KERNELS[choice])
    elif choice == "irqtrace":
        release = install_irqtrace_kernel()
    else:
        image = Path(choice)
        if not image.exists():
            raise SystemExit(f"vmtest: kernel image {image} not found")
        return image, image.name.removeprefix("vmlinuz-")
    return Path(f"/boot/vmlinuz-{release}"), release


def compile_checkout() -> None:
    """Byte-compile the checkout here: the guest sees it read-only, so its Pythons would
    otherwise compile every module of ours at every start (this machine runs with
    PYTHONDONTWRITEBYTECODE)."""
    subprocess.run([str(VENV / "bin" / "python"), "-m", "compileall", "-q", "src", "tests"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def build_fixture(release: str, name: str) -> Path:
    """Build tests/kmod against the guest kernel's headers, in build/kmod/<release>[-<name>]/
    (a directory per VM, so that VMs started together do not build into one)."""
    kdir = Path(f"/lib/modules/{release}/build")
    if not kdir.exists():
        raise SystemExit(f"vmtest: no headers for {release} in {kdir} "
                         f"(apt-get install linux-headers-{release})")
    out = ROOT / "build" / "kmod" / (f"{release}-{name}" if name else release)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("Makefile", "irqlock_fixture.c"):
        shutil.copy2(ROOT / "tests" / "kmod" / name, out / name)
    subprocess.run(["make", "-s", "-C", str(out), f"KDIR={kdir}"], check=True,
                   stdout=subprocess.DEVNULL)
    return out / "irqlock_fixture.ko"


def guest_script(command: list[str], fixture: Path, results: Path, timeout_s: int) -> str:
    """The shell the guest runs: load the fixture, run the command, save dmesg and status."""
    quoted = " ".join(_shell_quote(c) for c in command)
    return f"""
export PATH={VENV}/bin:$PATH IRQLOCK_IN_VM=1 IRQLOCK_FIXTURE_KO={fixture} PYTHONDONTWRITEBYTECODE=1
export IRQLOCK_RESULTS={results}
cd {ROOT}
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
insmod {fixture} || echo 'vmtest: guest: insmod failed' >&2
timeout --kill-after=30 {timeout_s} {quoted} > {results}/output.log 2>&1
echo $? > {results}/status
rmmod irqlock_fixture 2>/dev/null
dmesg > {results}/dmesg
"""


def _shell_quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def follow(path: Path, stop: threading.Event, prefix: str) -> None:
    """Copy the guest command's output (written to the shared results dir) to ours as it grows,
    each line after `prefix` (which VM said it, when several run at once)."""
    offset, pending = 0, b""
    while True:
        stopping = stop.is_set()
        if path.exists():
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            if stopping and pending:
                lines, pending = [*lines, pending], b""
            sys.stdout.buffer.write(b"".join(prefix.encode() + line + b"\n" for line in lines))
            sys.stdout.flush()
        if stopping:
            return
        stop.wait(0.5)


# A guest test asks for its virtual CPUs to be stalled by writing this file in its results
# directory ("MIN_MS MAX_MS RUN_MS"): the host stops QEMU for MIN..MAX ms, lets it run RUN_MS,
# and again, until the file is gone -- what a hypervisor that runs vCPUs late does.
STALL_REQUEST = "stall"


def qemu_of(results: Path) -> int | None:
    """The QEMU process of the VM whose results directory is `results`."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and b"qemu-system" in cmdline[0] and any(str(results).encode() in a
                                                           for a in cmdline):
            return int(proc.name)
    return None


def stall_on_request(results: Path, stop: threading.Event) -> None:
    """Stop and continue the VM's QEMU while the guest asks for it (STALL_REQUEST)."""
    request = results / STALL_REQUEST
    request.unlink(missing_ok=True)  # a request left by an earlier run
    while not stop.wait(0.05):
        try:
            low, high, run = (float(x) / 1000 for x in request.read_text().split())
        except (OSError, ValueError):
            continue
        qemu = qemu_of(results)
        if qemu is None:
            continue
        while request.exists() and not stop.is_set():
            os.kill(qemu, signal.SIGSTOP)
            time.sleep(random.uniform(low, high))
            os.kill(qemu, signal.SIGCONT)
            time.sleep(run)


def run_vm(image: Path, script: str, cpus: int, memory: str, results: Path, timeout_s: int,
           monitor: Path | None, prefix: str, use_9p: bool) -> int:
    path = f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"
    vng = shutil.which("vng", path=path)
    if not vng:
        raise SystemExit("vmtest: vng not found: run scripts/setup.sh")
    # virtio-fs by default, served by Debian's C virtiofsd through the adapter in
    # scripts/virtiofs (vng speaks to the Rust daemon), its modules put in vng's initramfs
    # where needed: its guest-side cache (the checkout is read-only and nothing changes it
    # during a run) made each tool start ~8 s faster than 9p, whose every stat is a round
    # trip to the host (a Python import: ~400 of them).  9p on request; Debian's cloud
    # flavour has none.
    share = ["--force-9p"] if use_9p else []
    if not use_9p:
        path = f"{ROOT / 'scripts' / 'virtiofs'}:{path}"
    env = dict(os.environ, PATH=path)
    # --verbose: the guest's console (kernel messages included) goes to console.log, so a
    # lockup or oops that stops the guest from saving its dmesg is still on record.
    cmd = [vng, "--run", str(image), "--disable-kvm", *share, "--cpus", str(cpus),
           "--memory", memory, "--rwdir", str(results), "--verbose", "--exec", script]
    # One host thread for all vCPUs (no MTTCG): with a thread per vCPU, a vCPU was seen
    # looping forever on an int3 that ftrace had already removed (text_poke on another
    # vCPU) while detaching a trampoline from _raw_spin_unlock_irq.
    qemu_opts = ["-accel", "tcg,thread=single"]
    if monitor:  # a hung guest: "info registers -a", symbols from /proc/kallsyms of a nokaslr boot
        qemu_opts += ["-monitor", f"unix:{monitor},server,nowait"]
        cmd[3:3] = ["--append", "nokaslr"]
    cmd[3:3] = [f"--qemu-opts={' '.join(qemu_opts)}"]
    console = results / "console.log"
    stop_following = threading.Event()
    follower = threading.Thread(target=follow, args=(results / "output.log", stop_following, prefix))
    follower.start()
    staller = threading.Thread(target=stall_on_request, args=(results, stop_following), daemon=True)
    staller.start()
    with console.open("w") as out:
        try:
            return subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT,
                                  timeout=timeout_s + HOST_MARGIN_S).returncode
        except subprocess.TimeoutExpired:
            log(f"VM did not finish within {timeout_s + HOST_MARGIN_S} s")
            return 124
        finally:
            stop_following.set()
            follower.join()
            out.flush()
            if not (results / "status").exists():
                tail = console.read_text(errors="replace").splitlines()[-40:]
                log(f"guest console ({console}), last lines:\n  " + "\n  ".join(tail))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="stock",
                        help="a Debian kernel by name: "
                             + ", ".join(f"'{n}' ({p})" for n, p in DEBIAN_KERNELS.items())
                             + "; 'irqtrace' (../shared/kernels) or a vmlinuz path")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", default="2G")
    parser.add_argument("--share", choices=("virtiofs", "9p"), default="virtiofs",
                        help="how the guest mounts this machine's root (default: virtiofs; "
                             "9p is slower and absent from the cloud kernels)")
    parser.add_argument("--timeout", type=int, default=GUEST_TIMEOUT_S,
                        help="seconds the command may run in the guest")
    parser.add_argument("--monitor", type=Path, metavar="SOCKET",
                        help="QEMU monitor on this unix socket, guest booted without KASLR "
                             "(for debugging a hung guest)")
    parser.add_argument("--junit", type=Path, metavar="XML",
                        help="copy the kernel tests' JUnit XML report here")
    parser.add_argument("--tests", nargs="+", default=["tests/kernel"], metavar="PATH",
                        help="kernel test files or directories to run (default: tests/kernel)")
    parser.add_argument("--deselect", action="append", default=[], metavar="NODEID",
                        help="a test (pytest node id) not to run; may be repeated")
    parser.add_argument("--name", default="",
                        help="a name for this VM's results (build/vm-results/RELEASE-NAME) and "
                             "output lines, so that several can run at once")
    parser.add_argument("command", nargs="*",
                        help="command to run in the guest (default: the kernel tests)")
    args = parser.parse_args()

    image, release = resolve_kernel(args.kernel)
    fixture = build_fixture(release, args.name)
    compile_checkout()
    results = ROOT / "build" / "vm-results" / (f"{release}-{args.name}" if args.name else release)
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    command = args.command or [str(VENV / "bin" / "python"), "-m", "pytest", "-v", "--timeout", "600",
                               f"--junitxml={results / 'junit.xml'}", *args.tests,
                               *(f"--deselect={node}" for node in args.deselect)]
    log(f"booting {image} ({release}) under TCG: {' '.join(command)}")
    # The script goes in a file: vng passes --exec on the kernel command line, whose
    # length is limited (a long one overflowed a buffer and stopped the guest at boot).
    script = results / "guest.sh"
    script.write_text(guest_script(command, fixture, results, args.timeout))
    vm_status = run_vm(image, f"bash {script}", args.cpus, args.memory, results, args.timeout,
                       args.monitor, f"[{args.name}] " if args.name else "", args.share == "9p")

    status_file = results / "status"
    status = int(status_file.read_text()) if status_file.exists() else None
    dmesg_file = results / "dmesg"
    failures = []
    if dmesg_file.exists():
        bad = [line for line in dmesg_file.read_text(errors="replace").splitlines()
               if DMESG_FAILURE.search(line)]
        if bad:
            failures.append("guest dmesg has kernel warnings:\n  " + "\n  ".join(bad[:20]))
    else:
        failures.append("guest dmesg was not saved (the guest did not finish)")
    if status is None:
        failures.append(f"the command did not finish (vng exit {vm_status})")
    elif status == 124:
        failures.append(f"the command timed out after {args.timeout} s")
    elif status != 0:
        failures.append(f"the command failed with exit code {status}")
    if args.junit and (results / "junit.xml").exists():
        shutil.copy2(results / "junit.xml", args.junit)
    for failure in failures:
        log(f"FAIL ({results.name}): {failure}")
    if not failures:
        log(f"ok ({results.name})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
