"""The machine and install this process runs on (:func:`platform`, :func:`versions`): what a study's cell records as
its ``platform`` (:mod:`downpour.studies.machine`) and a run folder's environment.json holds
(:mod:`downpour.train.environment`)."""
from __future__ import annotations

import os
from typing import Iterable

# the instruction sets a CPU's float arithmetic can take another path by (MKL's and oneDNN's kernels, torch's own):
# the VM of 2026-12-04 had AVX-512, the one of 2026-12-05 AVX2 only, and both named themselves "AMD EPYC"
SIMD = ("fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
_PLATFORM: dict[str, str] | None = None


def platform() -> dict[str, str]:
    """What a cell's floats depend on besides its code, config and seed: the CPU, torch's kernels and BLAS, and the
    versions of the libraries the cell's training and measures run on (once a process; a run folder's
    environment.json holds it too: :mod:`downpour.train.environment`)."""
    global _PLATFORM
    if _PLATFORM is None:
        import platform as host

        import torch

        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""        # cpu_fields falls back on the processor's name
        cpu = cpu_fields(cpuinfo, host.processor() or host.machine())
        blas = next((line.strip(" -") for line in torch.__config__.show().splitlines() if "Math Kernel Library" in line
                     or "OpenBLAS" in line), "")
        _PLATFORM = {**cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "blas": blas,
                     "onednn": str(torch.backends.mkldnn.is_available()),
                     "MKL_CBWR": os.environ.get("MKL_CBWR", ""),
                     **versions(("torch", "numpy", "scipy", "scikit-learn", "python"))}
    return dict(_PLATFORM)


def versions(names: Iterable[str]) -> dict[str, str]:
    """Each installed distribution's version, by its name on PyPI (``python``: the interpreter's), as pip lists it
    ("2.13.0+cpu"; the module's ``__version__`` says the same), read from the install's metadata: none is imported,
    so a training process records scikit-learn's without its 1.5 s import; "not installed" for one that is not,
    "unreadable" for one whose metadata has no version or cannot be read (a dist-info folder without METADATA gave
    None, a broken one can raise: the run trains all the same)."""
    import platform as host
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = host.python_version() if name == "python" else version(name) or "unreadable"
        except PackageNotFoundError:
            found[name] = "not installed"
        except (OSError, TypeError, KeyError, ValueError):
            found[name] = "unreadable"
    return found


def cpu_fields(cpuinfo: str, fallback: str) -> dict[str, str]:
    """``cpu``: /proc/cpuinfo's first model name (``fallback`` without one); ``cpu_id``: its CPU family, model and
    stepping, where it has them; ``simd``: which of :data:`SIMD` its flags hold (space-separated), where it has flags.
    A VM's model name can be its maker's alone ("AMD EPYC" for the AVX-512 VM of 2026-12-04 and for the AVX2 one,
    family 25 model 1, started at 06:23 on 2026-12-05), so the name cannot tell two such machines apart; the id
    can (a record written before 2026-12-05 has none), and the flags say which kernels either can take (none
    before 2026-12-06)."""
    first: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        first.setdefault(key.strip(), value.strip())
    out = {"cpu": first.get("model name") or fallback}
    if "cpu family" in first and "model" in first:
        out["cpu_id"] = f"family {first['cpu family']} model {first['model']} stepping {first.get('stepping', '?')}"
    if "flags" in first:
        flags = set(first["flags"].split())
        out["simd"] = " ".join(f for f in SIMD if f in flags)
    return out
