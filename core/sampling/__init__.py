"""Sampling math shared by the methods: DDIM / flow inversion, gradient checkpointing."""
