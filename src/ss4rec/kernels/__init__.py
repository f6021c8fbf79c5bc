"""Compiled CPU kernels: built from C source for the CPU that runs them, loaded with ctypes.

The library is plain C (no torch headers, so it never depends on, or pulls, a particular torch build). It
is compiled with ``-march=native`` for the machine that builds it and cached under a key made of the
source, the flags, the compiler and this CPU's model and feature flags: a cache moved to another CPU, or an
edited source, simply builds again. Nothing is shipped prebuilt.

``make install`` builds it (``python -m ss4rec.kernels``); otherwise the first use builds it (about a
second). When it cannot be built or loaded, every caller falls back to the pure-PyTorch path and one
warning says why. ``SS4REC_KERNELS`` chooses: ``auto`` (default: build or load, fall back on failure),
``off`` (never load: the PyTorch path everywhere), ``require`` (fail loudly instead of falling back, as
CI does). ``SS4REC_KERNEL_DIR`` moves the cache (default: the user cache, ``~/.cache/ss4rec/kernels``).

Flags: ``-O3 -march=native -fopenmp-simd -fassociative-math`` and no ``-ffast-math``: the exp inside the
scan is our own branch-free polynomial, which vectorises without glibc's vector maths, and a shared library
linked with ``-ffast-math`` would switch the whole process (torch included) to flush-to-zero when it loads.
Compiling and linking are separate steps, and the link gets no floating-point flags at all.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("selective_scan.c")
ABI_VERSION = 2  # must match SS_ABI_VERSION in the C source
# -fassociative-math (with the two flags it needs) lets the vectorised sums over states run pairwise
# instead of as one serial chain; the exp inside uses fmaf, which reassociation cannot split.
CFLAGS = ["-O3", "-fPIC", "-std=gnu11", "-pthread", "-fopenmp-simd", "-fassociative-math", "-fno-signed-zeros",
          "-fno-trapping-math"]  # fmt: skip
LDFLAGS = ["-shared", "-pthread"]  # no math-mode flags at link time: nothing may set FTZ/DAZ for the process
MODES = ("auto", "off", "require")


class KernelError(RuntimeError):
    """The compiled kernels were required (SS4REC_KERNELS=require) but could not be built or loaded."""


def mode() -> str:
    value = os.environ.get("SS4REC_KERNELS", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise KernelError(f"SS4REC_KERNELS={value!r}: expected one of {', '.join(MODES)}")
    return value


def cache_dir() -> Path:
    if os.environ.get("SS4REC_KERNEL_DIR"):
        return Path(os.environ["SS4REC_KERNEL_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("ss4rec")) / "kernels"


def compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")


def cpu_fingerprint() -> str:
    """This CPU's model and feature flags (what -march=native compiles for)."""
    lines = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part", "cpu family", "model"):
                    lines.append(line.strip())
                if not line.strip() and lines:
                    break  # the first processor is enough
    except OSError:
        pass
    return platform.machine() + "\n" + "\n".join(lines)


def _compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def headers_bytes() -> bytes:
    """The kernels' shared headers (``#include "fast_exp.h"``), part of every library's cache key."""
    return b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.h")))


def library_path(cc: str, flags: list[str], source: Path | None = None, stem: str = "libss4rec_cpu") -> Path:
    """Where the library built from ``source`` (default: the scan, ``SOURCE``) with ``flags`` is cached."""
    key = hashlib.sha256()
    for part in ((source or SOURCE).read_bytes() + headers_bytes(), " ".join(flags + LDFLAGS).encode(),
                 _compiler_version(cc).encode()):
        key.update(part)
        key.update(b"\0")
    key.update(cpu_fingerprint().encode())
    return cache_dir() / f"{stem}-{key.hexdigest()[:16]}.so"


def _run_steps(steps: list[list[str]]) -> str | None:
    """Run compiler commands in order; None when all succeed, else the failing command and its errors."""
    for cmd in steps:
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as e:
            return f"{' '.join(cmd)}: {e}"
        if result.returncode != 0:
            return f"{' '.join(cmd)}:\n{result.stderr.strip()[-2000:]}"
    return None


def build(force: bool = False, source: Path | None = None, stem: str = "libss4rec_cpu") -> Path:
    """Compile a library for this CPU (or find it cached) and return its path; raises KernelError.

    ``source``: one C file of this folder (default: the scan, ``SOURCE``); ``stem`` names its cache files.
    """
    source = source or SOURCE
    cc = compiler()
    if cc is None:
        raise KernelError("no C compiler found (set CC, or install gcc)")
    errors = []
    for arch in (["-march=native"], []):  # a compiler without -march=native still gets a working build
        flags = CFLAGS + arch
        path = library_path(cc, flags, source, stem)
        if path.exists() and not force:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        # build beside the target, then rename: concurrent builders (DDP ranks) never see a half file
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
        os.close(fd)
        steps = [
            [cc, *flags, "-c", str(source), "-o", tmp + ".o"],
            [cc, *LDFLAGS, tmp + ".o", "-o", tmp, "-lm"],
        ]
        failed = _run_steps(steps)
        Path(tmp + ".o").unlink(missing_ok=True)
        if failed is None:
            os.replace(tmp, path)
            return path
        errors.append(failed)
        Path(tmp).unlink(missing_ok=True)
    raise KernelError(f"could not compile {source.name}:\n" + "\n".join(errors))


class _Library:
    """The loaded shared library with its function signatures set."""

    def __init__(self, path: Path):
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        self.lib.ss4rec_abi_version.restype = ctypes.c_int
        version = self.lib.ss4rec_abi_version()
        if version != ABI_VERSION:
            raise KernelError(f"{path}: ABI version {version}, expected {ABI_VERSION}")
        from ss4rec.kernels.scan import ScanArgs

        for name in ("ss4rec_scan_fwd", "ss4rec_scan_bwd"):
            fn = getattr(self.lib, name)
            fn.argtypes = [ctypes.POINTER(ScanArgs)]
            fn.restype = ctypes.c_int


@functools.cache
def library() -> _Library | None:
    """The compiled library, built on first use; None (with one warning) when unavailable."""
    if mode() == "off":
        log.info("compiled CPU kernels off (SS4REC_KERNELS=off): using the PyTorch scans")
        return None
    try:
        return _Library(build())
    except (KernelError, OSError) as e:
        if mode() == "require":
            raise KernelError(f"SS4REC_KERNELS=require, but {e}") from e
        log.warning("compiled CPU kernels unavailable, using the PyTorch scans (slower): %s", e)
        return None
