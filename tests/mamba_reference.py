"""mamba_ssm's own Python definitions (its ``Mamba`` module and ``selective_scan_ref``), on any machine.

Where ``mamba_ssm`` is installed (a CUDA machine) it is imported as is. Elsewhere its source tree is loaded
from the pinned sdist that ``make reference`` (part of ``make install``) unpacks under ``.cache/reference/``
(or from ``$SS4REC_MAMBA_SSM_SRC``). mamba_ssm cannot be imported there as is: its scan module imports the
compiled ``selective_scan_cuda`` and a Triton layer norm at import time. Those two modules are stubbed
while loading; nothing that runs in the tests touches them, because the tests run ``Mamba`` with
``use_fast_path=False`` and its ``selective_scan_fn`` replaced by ``selective_scan_ref``
(see :func:`reference_mamba`). ``sys.modules`` is restored after loading.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import types
from pathlib import Path

PIN = Path(__file__).resolve().parent / "reference" / "mamba_ssm.txt"  # the one place the version is pinned
VERSION = re.search(r"^mamba-ssm==(\S+)", PIN.read_text(), re.MULTILINE).group(1)
SOURCE = PIN.parents[2] / ".cache" / "reference" / f"mamba_ssm-{VERSION}"


def _touched(name: str) -> bool:
    """Modules that loading from source replaces or stubs."""
    return name.split(".")[0] in ("mamba_ssm", "selective_scan_cuda", "causal_conv1d")


def _from_source(root: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """Load mamba_simple and selective_scan_interface from an unpacked sdist without running mamba_ssm/__init__."""
    saved = {name: module for name, module in sys.modules.items() if _touched(name)}
    try:
        for name in saved:
            del sys.modules[name]
        package = types.ModuleType("mamba_ssm")  # a bare package: its __init__ imports Triton-only modules
        package.__path__ = [str(root / "mamba_ssm")]
        sys.modules["mamba_ssm"] = package
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
        layer_norm = types.ModuleType("mamba_ssm.ops.triton.layer_norm")
        for name in ("_layer_norm_fwd", "RMSNorm", "layer_norm_fn", "rms_norm_fn"):
            setattr(layer_norm, name, None)
        sys.modules["mamba_ssm.ops.triton.layer_norm"] = layer_norm
        sys.modules["causal_conv1d"] = None  # the CPU path: plain Conv1d
        interface = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
        simple = importlib.import_module("mamba_ssm.modules.mamba_simple")
    finally:
        for name in [n for n in sys.modules if _touched(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
    return simple, interface


def load() -> tuple[types.ModuleType, types.ModuleType] | str:
    """``(mamba_simple, selective_scan_interface)`` of mamba_ssm, or why they are not available."""
    try:
        return (
            importlib.import_module("mamba_ssm.modules.mamba_simple"),
            importlib.import_module("mamba_ssm.ops.selective_scan_interface"),
        )
    except Exception:  # noqa: BLE001 - not installed, or installed without its CUDA extension
        pass
    root = Path(os.environ.get("SS4REC_MAMBA_SSM_SRC") or SOURCE)
    if not (root / "mamba_ssm" / "modules" / "mamba_simple.py").is_file():
        return f"mamba_ssm is not installed and its source is not at {root} (run `make reference`)"
    return _from_source(root)


def reference_mamba(simple: types.ModuleType, interface: types.ModuleType, monkeypatch, *args, **kwargs):
    """mamba_ssm's ``Mamba(*args, **kwargs)`` running its pure-PyTorch path: plain Conv1d, ``selective_scan_ref``."""
    monkeypatch.setattr(simple, "selective_scan_fn", interface.selective_scan_ref)
    monkeypatch.setattr(simple, "causal_conv1d_fn", None)
    return simple.Mamba(*args, use_fast_path=False, **kwargs)
