"""The suite's first two parts: what it runs on, and the matmul peak MFU is measured against."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import lightning
import torch
import transformers
from suite_settings import SuiteSettings

from monolm.provenance import code_version

AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
REPO = Path(__file__).resolve().parents[1]


def log(*parts: Any) -> None:
    print(*parts, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def filesystem(path: Path) -> str:
    """The type of the filesystem holding `path` (ext4, xfs, overlay, tmpfs, nfs...)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    holding = [(point, kind) for point, kind in mounts if resolved.startswith(point.rstrip("/"))]
    return max(holding, key=lambda m: len(m[0]))[1] if holding else "unknown"


def source_sha256() -> str:
    """A hash of the code and configs that ran (src/, benchmarks/, conf/, the entry points):
    a copy of the working tree without .git is still matched to a commit by recomputing it."""
    digest = hashlib.sha256()
    files = [p for d in ("src", "benchmarks", "conf") for p in (REPO / d).rglob("*")]
    files += [REPO / name for name in ("train.py", "evaluate.py", "attack.py")]
    for path in sorted(p for p in files if p.suffix in (".py", ".yaml", ".sh") and p.is_file()):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def environment(s: SuiteSettings, work: Path) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "lightning": lightning.__version__,
        "code": code_version(),
        "source_sha256": source_sha256(),
        "host_cpus": os.cpu_count(),
        "host_memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9,
        "work_disk_free_gb": shutil.disk_usage(work.parent).free / 1e9,
        "work_filesystem": filesystem(work),
    }
    if s.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device is visible (run --cpu-smoke on a machine without)")
        props = torch.cuda.get_device_properties(0)
        info |= {
            "device": props.name,
            "device_count": torch.cuda.device_count(),
            "capability": f"{props.major}.{props.minor}",
            "device_memory_gb": props.total_memory / 1e9,
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "cudnn": torch.backends.cudnn.version(),
        }
        if not info["bf16_supported"]:
            raise RuntimeError(f"{props.name} has no bf16: the suite measures bf16-mixed")
    else:
        info["device"] = f"CPU ({platform.processor() or platform.machine()})"
        info["threads"] = torch.get_num_threads()
    return info


def matmul_peak(s: SuiteSettings, work: Path) -> dict[str, Any]:
    """The device's dense matmul rate at the autocast dtype (bf16), measured: square products
    at each size, repeated for `peak_seconds` after warm-up; the best size is the peak MFU is
    measured against (on a CPU, the CPU's, the same way)."""
    device, dtype = torch.device(s.device), AUTOCAST.get(s.precision, torch.float32)
    sizes = {}
    for n in s.peak_sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        sync(device)
        count, start = 0, time.perf_counter()
        while True:
            for _ in range(5):
                a @ b
            count += 5
            sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= s.peak_seconds:
                break
        sizes[n] = 2 * n**3 * count / elapsed / 1e12
        log(f"matmul {n}^3 {dtype}: {sizes[n]:.1f} TFLOP/s")
        del a, b
    return {"dtype": str(dtype), "tflops_by_size": sizes, "peak_tflops": max(sizes.values())}
