"""Runners: execute pinned workloads through the real pipelines and write guardrail.result/v1 files.

Heavy stacks (torch, diffusers, transformers, torch_npu) are imported lazily inside the functions
that need them; importing this package needs only the service core.
"""

from runners.lane import run_lane

__all__ = ["run_lane"]
