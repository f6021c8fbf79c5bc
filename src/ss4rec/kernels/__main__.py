"""Build (or find) the compiled CPU kernels for this machine and check them against the PyTorch scan.

    python -m ss4rec.kernels [--force]

Exit status 0 when the library builds, loads and agrees with the PyTorch path; 1 otherwise (the message
says why; training still works then, on the PyTorch path).
"""

from __future__ import annotations

import argparse
import sys

import torch

from ss4rec import kernels


def self_check() -> float:
    """Largest relative difference between the compiled and the PyTorch scan on a small random case."""
    from ss4rec.kernels.scan import selective_scan_compiled
    from ss4rec.models.selective_scan import selective_scan_torch

    g = torch.Generator().manual_seed(0)
    batch, dim, length, n = 2, 8, 19, 16
    args = [torch.randn(batch, dim, length, generator=g), torch.randn(batch, dim, length, generator=g),
            -torch.rand(dim, n, generator=g) * 4, torch.randn(batch, n, length, generator=g),
            torch.randn(batch, n, length, generator=g), torch.randn(dim, generator=g),
            torch.randn(batch, dim, length, generator=g), torch.randn(dim, generator=g)]  # fmt: skip
    want = selective_scan_torch(*args, delta_softplus=True)
    got = selective_scan_compiled(*args, delta_softplus=True)
    return ((got - want).abs().max() / want.abs().max()).item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when a cached library exists")
    args = parser.parse_args(argv)
    try:
        path = kernels.build(force=args.force)
    except kernels.KernelError as e:
        print(f"kernels: {e}\nkernels: training will use the PyTorch scans (slower)", file=sys.stderr)
        return 1
    if kernels.mode() == "off":
        print(f"kernels: built {path}, but SS4REC_KERNELS=off: they will not be used", file=sys.stderr)
        return 0
    if kernels.library() is None:
        print(f"kernels: built {path} but could not load it (see the warning above)", file=sys.stderr)
        return 1
    err = self_check()
    if not err < 1e-5:
        print(
            f"kernels: {path} disagrees with the PyTorch scan (relative difference {err:.2e})",
            file=sys.stderr,
        )
        return 1
    print(f"kernels: {path} (matches the PyTorch scan to {err:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
