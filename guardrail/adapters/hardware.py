"""Accelerator names as the benchmark tools write them: one spelling per model, and its device type."""

from __future__ import annotations

import re

# Device names as vLLM-Omni's runners label them (H100, H20, L40S, A100, MI300, 910B4, A2, A3, ...). NPU is
# tried first: "A2"/"A3" are Ascend boxes, while "A10"/"A100" are NVIDIA parts.
_NPU = re.compile(r"^(ascend.*|atlas.*|huawei.*|a[23]|910.*|310.*|npu.*)$", re.I)
_CUDA = re.compile(r"^(nvidia.*|[ahlv]\d{1,3}[a-z]*|h\d{2,3}[a-z]*|b[12]\d\d[a-z]*|gb\d+.*|rtx.*|cuda.*)$", re.I)
_ROCM = re.compile(r"^(amd.*|mi\d+.*|rocm.*)$", re.I)
_XPU = re.compile(r"^(intel.*(arc|gpu|max).*|b[5-7]\d|xpu.*)$", re.I)


def normalize_hardware(raw: str) -> str:
    """`h200` -> `H200`: vLLM-Omni's local files spell accelerator models in lower case, its test cases and
    reports in upper case; one spelling keeps them one series. Names with spaces/dashes are kept as given."""
    raw = raw.strip()
    return raw.upper() if re.fullmatch(r"[a-zA-Z]{1,2}\d{1,4}[a-zA-Z]?", raw) else raw


def device_type_of(hardware: str) -> str:
    if _NPU.match(hardware):
        return "npu"
    if _CUDA.match(hardware):
        return "cuda"
    if _ROCM.match(hardware):
        return "rocm"
    if _XPU.match(hardware):
        return "xpu"
    if hardware.lower() == "cpu" or any(w in hardware.lower() for w in ("intel", "xeon", "epyc", "ryzen", "arm")):
        return "cpu"
    return "unknown"
