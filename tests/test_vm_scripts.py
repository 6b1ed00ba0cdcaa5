"""The test VM's scripts on the host: concurrent tests/vm/setup.sh runs share one cache safely,
and the QEMU command line lives in tests/vm/qemu.sh alone.

Example:
    $ .venv/bin/pytest -q tests/test_vm_scripts.py

setup.sh is run for real on the full-kernel path, the cheap one (a copy of the kernel and a
busybox initramfs, no download), against a fresh ``DEVALLOC_VM_CACHE`` and a stand-in kernel
directory (``DEVALLOC_FULL_KERNEL_DIR``): a file with a bzImage setup header and its SHA256SUMS.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import pathlib
import shutil
import struct
import subprocess

import pytest

REPO = pathlib.Path(__file__).parent.parent
VM = REPO / "tests" / "vm"
SETUP_PACKAGES = ("qemu-system-x86", "busybox-static", "kmod", "cpio", "xz-utils")
VERSION = "6.12.99-stress"


def _installed(package: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return done.stdout == "install ok installed"


@pytest.fixture(scope="module")
def setup_packages() -> None:
    """setup.sh installs what is missing (as root): here it must find them all."""
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system: tests/vm/setup.sh needs dpkg and apt")
    missing = [p for p in SETUP_PACKAGES if not _installed(p)]
    if missing:
        pytest.skip(
            f"the test VM's packages are not installed ({', '.join(missing)}): run "
            "scripts/setup.sh --dev"
        )


def fake_kernel(directory: pathlib.Path, version: str = VERSION) -> str:
    """A stand-in bzImage (setup header magic and a version string where the boot protocol puts
    them; 64 KiB) and its SHA256SUMS in ``directory``; returns its sha256."""
    image = bytearray(64 << 10)
    image[0x202:0x206] = b"HdrS"
    version_at = 0x400  # kernel_version (0x20E) holds its offset from 0x200
    struct.pack_into("<H", image, 0x20E, version_at - 0x200)
    text = f"{version} (test@host) #1 SMP\0".encode()
    image[version_at : version_at + len(text)] = text
    image[-4:] = b"tail"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bzImage").write_bytes(image)
    digest = hashlib.sha256(image).hexdigest()
    (directory / "SHA256SUMS").write_text(f"{digest}  bzImage\n")
    return digest


def start_setup(
    script: pathlib.Path, cache: pathlib.Path, kernel: pathlib.Path
) -> subprocess.Popen[str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(cache.parent),
        "DEVALLOC_VM_CACHE": str(cache),
        "DEVALLOC_FULL_KERNEL_DIR": str(kernel),
    }
    return subprocess.Popen(
        ["bash", str(script), "--kernel", "full"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cpio_names(archive: bytes) -> set[str]:
    """The member names of a newc cpio archive."""
    names: set[str] = set()
    at = 0
    while True:
        header = archive[at : at + 110]
        assert header[:6] == b"070701", f"not a newc cpio header at {at}"
        name_size = int(header[94:102], 16)
        file_size = int(header[54:62], 16)
        name = archive[at + 110 : at + 110 + name_size - 1].decode()
        if name == "TRAILER!!!":
            return names
        names.add(name)
        at = (at + 110 + name_size + 3) & ~3
        at = (at + file_size + 3) & ~3


def run_concurrently(
    script: pathlib.Path, tmp_path: pathlib.Path, runs: int
) -> tuple[list[tuple[int, str, str]], pathlib.Path, str]:
    """Start ``runs`` setup.sh --kernel full at once on a fresh cache; their (exit status, stdout,
    stderr), the cache and the kernel's sha256."""
    cache = tmp_path / "cache"
    kernel = tmp_path / "kernel"
    digest = fake_kernel(kernel)
    procs = [start_setup(script, cache, kernel) for _ in range(runs)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append((proc.returncode, out, err))
    return results, cache, digest


@pytest.mark.usefixtures("setup_packages")
def test_concurrent_setups_share_one_complete_preparation(tmp_path: pathlib.Path) -> None:
    results, cache, digest = run_concurrently(VM / "setup.sh", tmp_path, 4)
    assert [rc for rc, _, _ in results] == [0] * 4, [err for _, _, err in results]
    dirs = {out.strip() for _, out, _ in results}
    assert len(dirs) == 1, dirs
    prepared = pathlib.Path(dirs.pop())
    assert prepared.parent == cache
    assert prepared.name.startswith(f"full-{VERSION}-{digest[:10]}-")
    # One run prepared it; the others waited for it, then found it ready.
    assert sum("preparing the full kernel" in err for _, _, err in results) == 1
    # Complete: every file, the kernel byte for byte, an initramfs holding init and busybox.
    names = {p.name for p in prepared.iterdir()}
    assert {"ready", "vmlinuz", "initramfs.gz", "version", "kind", "source"} <= names
    assert (prepared / "vmlinuz").read_bytes() == (tmp_path / "kernel" / "bzImage").read_bytes()
    assert (prepared / "version").read_text() == f"{VERSION}\n"
    assert (prepared / "kind").read_text() == "full\n"
    members = cpio_names(gzip.decompress((prepared / "initramfs.gz").read_bytes()))
    assert {"init", "bin/busybox", "modules.order"} <= members
    # Nothing but the prepared directory and the lock is left in the cache.
    assert sorted(p.name for p in cache.iterdir()) == sorted([".lock", prepared.name])


@pytest.mark.usefixtures("setup_packages")
def test_an_unfinished_preparation_is_replaced(tmp_path: pathlib.Path) -> None:
    results, cache, _ = run_concurrently(VM / "setup.sh", tmp_path, 1)
    [(rc, out, err)] = results
    assert rc == 0, err
    prepared = pathlib.Path(out.strip())
    # What an interrupted older setup.sh left: the directory without its ready mark, half-made.
    (prepared / "ready").unlink()
    (prepared / "initramfs.gz").write_bytes(b"trunc")
    # and the staging directory of a setup.sh killed while it prepared
    killed = cache / f".staging-{prepared.name}.Xk9a2Q"
    (killed / "initramfs").mkdir(parents=True)
    again = start_setup(VM / "setup.sh", cache, tmp_path / "kernel")
    out2, err2 = again.communicate(timeout=300)
    assert again.returncode == 0, err2
    assert out2 == out
    assert (prepared / "ready").exists()
    assert "init" in cpio_names(gzip.decompress((prepared / "initramfs.gz").read_bytes()))
    assert sorted(p.name for p in cache.iterdir()) == sorted([".lock", prepared.name])


# -- the QEMU command line: tests/vm/qemu.sh alone, used by run.sh and bench/run-vm.sh ----------

FAKE_QEMU = """#!/bin/bash
# qemu-system-x86_64 stand-in: records its arguments and the guest command, reports $FAKE_RC.
if [ "$1" = --version ]; then echo "QEMU emulator version 7.2.99"; exit 0; fi
printf '%s\\n' "$@" > "$RECORD/argv"
for a in "$@"; do
  case "$a" in
    local,path=*,mount_tag=out,*) out=${a#local,path=}; out=${out%%,mount_tag=out*} ;;
  esac
done
cp "$out/guest-cmd.sh" "$RECORD/guest-cmd.sh"
[ "${FAKE_RC:-0}" = none ] || echo "${FAKE_RC:-0}" > "$out/rc"
"""

QEMU_LAUNCHERS = (VM / "qemu.sh", VM / "run.sh", REPO / "bench" / "run-vm.sh")


@pytest.fixture
def fake_vm(tmp_path: pathlib.Path) -> dict[str, str]:
    """An environment in which the VM scripts run a recording QEMU stand-in, with a stand-in full
    kernel prepared in a fresh cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qemu = bin_dir / "qemu-system-x86_64"
    qemu.write_text(FAKE_QEMU)
    qemu.chmod(0o755)
    record = tmp_path / "record"
    record.mkdir()
    fake_kernel(tmp_path / "kernel")
    return {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(tmp_path),
        "RECORD": str(record),
        "DEVALLOC_VM_CACHE": str(tmp_path / "cache"),
        "DEVALLOC_FULL_KERNEL_DIR": str(tmp_path / "kernel"),
    }


def _launch(env: dict[str, str], fake_rc: str, *command: str) -> tuple[str, list[str], str]:
    """Run a VM launcher with the QEMU stand-in reporting ``fake_rc`` (``none``: no report);
    it must succeed. Its stdout, the QEMU arguments and the guest command."""
    done = subprocess.run(
        command, env={**env, "FAKE_RC": fake_rc}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    record = pathlib.Path(env["RECORD"])
    return (
        done.stdout,
        (record / "argv").read_text().splitlines(),
        (record / "guest-cmd.sh").read_text(),
    )


def _option(argv: list[str], name: str) -> list[str]:
    """Every value given to the QEMU option ``name``."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]


def test_the_qemu_command_line_exists_once() -> None:
    """Only tests/vm/qemu.sh runs qemu-system-x86_64 with a machine; the launchers source it."""
    booting = [
        path.relative_to(REPO)
        for path in [*VM.glob("*.sh"), *(REPO / "bench").glob("*.sh"), *REPO.glob("scripts/*.sh")]
        if "-machine q35" in path.read_text()
    ]
    assert booting == [pathlib.Path("tests/vm/qemu.sh")]
    for launcher in QEMU_LAUNCHERS[1:]:
        sourced = [line for line in launcher.read_text().splitlines() if line.startswith("source")]
        assert len(sourced) == 1
        assert sourced[0].endswith('/qemu.sh"')


@pytest.mark.usefixtures("setup_packages")
def test_run_sh_boots_through_qemu_sh(fake_vm: dict[str, str]) -> None:
    stdout, argv, guest = _launch(
        fake_vm,
        "0",
        *(str(VM / "run.sh"), "--kernel", "full", "--timeout", "77", "--append", "vivid.x=1"),
        *("--", "-m", "kernel", "-k", "not slow", "tests/kernel/test_rig.py"),
    )
    assert _option(argv, "-accel") == ["tcg"]
    assert _option(argv, "-smp") == ["2"]
    assert _option(argv, "-m") == ["2048"]
    assert _option(argv, "-append") == ["console=ttyS0 quiet loglevel=3 panic=-1 vivid.x=1"]
    [kernel] = _option(argv, "-kernel")
    assert pathlib.Path(kernel).read_text(errors="replace").endswith("tail")
    assert "vm: booting the full kernel, Linux 6.12.99-stress" in stdout
    assert f"cd {REPO} || exit 97" in guest
    assert "DEVALLOC_VM_KERNEL=full" in guest
    # the pytest arguments arrive as they were given, through the guest's /bin/sh
    last = guest.splitlines()[-1]
    assert last.startswith("exec ")
    words = subprocess.run(
        ["sh", "-c", f"printf '%s\\n' {last.split(' -m pytest ', 1)[1]}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert words[-5:] == ["-m", "kernel", "-k", "not slow", "tests/kernel/test_rig.py"]


@pytest.mark.usefixtures("setup_packages")
def test_run_sh_reports_a_guest_that_gave_no_result(fake_vm: dict[str, str]) -> None:
    done = subprocess.run(
        [str(VM / "run.sh"), "--kernel", "full"],
        env={**fake_vm, "FAKE_RC": "none"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "vm: FAILED: the guest stopped without reporting a result (qemu exit 0)" in done.stderr


@pytest.mark.usefixtures("setup_packages")
@pytest.mark.skipif(shutil.which("gcc") is None, reason="bench/run-vm.sh builds heapbench.c")
def test_bench_boots_the_same_vm_with_icount(fake_vm: dict[str, str]) -> None:
    stdout, argv, guest = _launch(
        fake_vm,
        "0",
        *("bash", str(REPO / "bench" / "run-vm.sh"), "--kernel", "full", "--icount"),
        *("--", "--sizes", "4096"),
    )
    assert _option(argv, "-accel") == ["tcg,thread=single"]
    assert _option(argv, "-icount") == ["shift=0,sleep=off"]
    assert _option(argv, "-smp") == ["1"]
    assert _option(argv, "-m") == ["2048"]
    assert "bench: booting the full kernel, Linux 6.12.99-stress" in stdout
    assert "DEVALLOC_VM_KERNEL=full" in guest
    assert "DEVALLOC_BENCH_VM=QEMU\\ 7.2.99\\ -accel\\ tcg\\,thread=single" in guest
    assert "--label full-icount" in guest
    assert guest.rstrip().endswith("--sizes 4096 > /run/devalloc-out/summary.md")


@pytest.mark.usefixtures("setup_packages")
@pytest.mark.skipif(shutil.which("gcc") is None, reason="bench/run-vm.sh builds heapbench.c")
def test_bench_runs_the_service_bench_with_the_c_loop(fake_vm: dict[str, str]) -> None:
    """--script service runs bench/service.py in the same VM, with heapbench for the C loop and
    no heaps.py defaults."""
    _, argv, guest = _launch(
        fake_vm,
        "0",
        *("bash", str(REPO / "bench" / "run-vm.sh"), "--icount", "--script", "service"),
        *("--", "--count", "60"),
    )
    assert _option(argv, "-icount") == ["shift=0,sleep=off"]
    last = guest.rstrip().splitlines()[-1]
    assert " bench/service.py --vm --label stock-icount --cbin /run/devalloc-out/heapbench" in last
    assert "--out /run/devalloc-out/service.json --count 60 > " in last
    assert "--batches" not in last


# -- build-kernel.sh: one build at a time per cache -------------------------------------------

STAND_INS = {
    # every build dependency counts as installed
    "dpkg-query": "#!/bin/sh\nprintf 'install ok installed'\n",
    # a download means a build started: the run must not get that far
    "apt-get": '#!/bin/sh\necho "apt-get stand-in: $*" >&2\nexit 99\n',
}


def test_build_kernel_waits_for_a_running_build_and_reuses_it(tmp_path: pathlib.Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STAND_INS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    script = VM / "build-kernel.sh"
    version = "6.12.0-stress"
    key = hashlib.sha256(
        f"linux-source-6.12={version}\n".encode()
        + (VM / "full-kernel.config").read_bytes()
        + script.read_bytes()
    ).hexdigest()[:12]
    cache = tmp_path / "kernel-cache"
    cache.mkdir()
    built = cache / key
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(tmp_path),
        "DEVALLOC_KERNEL_CACHE": str(cache),
        "DEVALLOC_KERNEL_SOURCE_VERSION": version,
    }
    with (cache / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build-kernel.sh, building
        proc = subprocess.Popen(
            [str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert (
            first == f"build-kernel: waiting for {cache}/.lock (another build-kernel.sh holds it)\n"
        )
        built.mkdir()  # what the other build leaves when it is done
        (built / "ready").touch()
        fcntl.flock(lock, fcntl.LOCK_UN)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == f"{built}\n"
    assert "reusing the kernel built from linux-source-6.12" in err
    assert sorted(p.name for p in built.iterdir()) == ["ready"]
