"""A real slowdown in one op, for tests/test_profile_capture.py and the GPU figure in docs/profiles.md: with this
folder first on a worker's PYTHONPATH and GUARDRAIL_TEST_SLOW_GELU=N, every diffusers FeedForward forward runs N
extra GELUs over a tensor of GUARDRAIL_TEST_SLOW_GELU_ELEMS elements (default 2**20) on the module's device and
dtype: aten::gelu gets slower and is called more often, in the timed repeats and in the profiled process alike."""

import os

_N = int(os.environ.get("GUARDRAIL_TEST_SLOW_GELU") or 0)
_ELEMS = int(os.environ.get("GUARDRAIL_TEST_SLOW_GELU_ELEMS") or 1 << 20)
if _N > 0:
    import torch

    _bufs: dict = {}

    def _slow_gelu(module, args, output):
        if type(module).__name__ != "FeedForward" or not isinstance(output, torch.Tensor):
            return None
        key = (output.device, output.dtype)
        if key not in _bufs:
            _bufs[key] = torch.ones(_ELEMS, device=output.device, dtype=output.dtype)
        for _ in range(_N):
            torch.nn.functional.gelu(_bufs[key])
        return None

    torch.nn.modules.module.register_module_forward_hook(_slow_gelu)
