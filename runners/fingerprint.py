"""Environment fingerprint: every version that can move the numbers, recorded beside them."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from guardrail.schema import Environment
from runners.device import Device

PACKAGES = {
    "torch": "torch",
    "torch_npu": "torch_npu",
    "diffusers": "diffusers",
    "transformers": "transformers",
    "accelerate": "accelerate",
    "mindiesd": "mindiesd",
    "cache_dit": "cache-dit",
    "triton": "triton",
}


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _run(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def cann_version() -> str | None:
    """CANN toolkit version from the installed toolkit's version file (ascend-toolkit layout)."""
    roots = [
        os.environ.get("ASCEND_TOOLKIT_HOME"),
        os.environ.get("ASCEND_HOME_PATH"),
        "/usr/local/Ascend/ascend-toolkit/latest",
    ]
    for root in filter(None, roots):
        for name in ("version.cfg", "compiler/version.info", "runtime/version.info", "toolkit/version.info"):
            f = Path(root) / name
            if f.is_file():
                m = re.search(r"(?:version|Version)\s*[=:]\s*([\w.\-]+)", f.read_text(errors="replace"))
                if m:
                    return m.group(1)
    return None


def npu_driver_version() -> str | None:
    f = Path("/usr/local/Ascend/driver/version.info")
    if f.is_file():
        m = re.search(r"Version\s*=\s*([\w.\-]+)", f.read_text(errors="replace"))
        if m:
            return m.group(1)
    out = _run(["npu-smi", "info"])
    if out:
        m = re.search(r"Version:\s*([\w.\-]+)", out)
        if m:
            return m.group(1)
    return None


def cuda_driver_version() -> str | None:
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return out.strip().splitlines()[0] if out else None


def software(device: Device) -> dict[str, str | None]:
    sw: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in PACKAGES.items():
        sw[key] = _version(dist)
    if device.type == "npu":
        sw["cann"] = cann_version()
        sw["npu_driver"] = npu_driver_version()
    elif device.type == "cuda":
        import torch

        sw["cuda"] = torch.version.cuda
        sw["cudnn"] = str(torch.backends.cudnn.version())
        sw["nvidia_driver"] = cuda_driver_version()
    sw["device_model"] = device.name()
    return sw


def environment(device_type: str) -> Environment:
    """The result's environment on this device: its model, count and every recorded version."""
    d = Device(device_type)
    sw = software(d)
    return Environment(
        hardware=sw["device_model"] or device_type,
        device_type=device_type,
        device_count=d.count(),
        software=sw,
        extra=environment_extra(d),
    )


def environment_extra(device: Device) -> dict[str, object]:
    import torch

    extra: dict[str, object] = {
        "os": platform.platform(),
        "cpu": _cpu(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(0)
        extra["gpu"] = {
            "name": p.name,
            "memory_mib": p.total_memory // 2**20,
            "sm_count": p.multi_processor_count,
            "capability": f"{p.major}.{p.minor}",
        }
    return extra


def _cpu() -> str:
    from runners.device import cpu_model

    return f"{cpu_model()} x{os.cpu_count()}"
