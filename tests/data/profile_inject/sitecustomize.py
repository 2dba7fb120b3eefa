"""A real slowdown in one op, for tests/test_profile_capture.py: with GUARDRAIL_TEST_SLOW_GELU=N on the path of a
worker's PYTHONPATH, every diffusers FeedForward forward runs N extra GELUs over a 1M-element tensor (aten::gelu
gets slower and is called more often), in the timed repeats and in the profiled process alike."""

import os

_N = int(os.environ.get("GUARDRAIL_TEST_SLOW_GELU") or 0)
if _N > 0:
    import torch

    _buf: list = []

    def _slow_gelu(module, args, output):
        if type(module).__name__ != "FeedForward":
            return None
        if not _buf:
            _buf.append(torch.ones(1 << 20))
        for _ in range(_N):
            torch.nn.functional.gelu(_buf[0])
        return None

    torch.nn.modules.module.register_module_forward_hook(_slow_gelu)
