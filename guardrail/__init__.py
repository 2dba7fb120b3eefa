"""perf-guardrail: a CI performance guardrail for diffusion serving."""

__version__ = "0.1.0"
