"""Developer tooling: host location, tiny models, server harness, workflow runner.

Not part of the pack that ComfyUI loads; used by scripts/, tests/ and benchmarks/.
"""
