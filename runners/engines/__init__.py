"""Engines execute one workload inside one process and return its measurements.

`diffusers` (in-process pipeline, runners.engines.diffusers_engine), `command` (an external benchmark command whose
output an adapter reads, runners.engines.command) and `vllm-omni-serve` (a vLLM-Omni server plus its benchmark
client, runners.engines.vllm_omni_serve); runners.lane picks one by the workload's `engine`.
"""
