"""Low-rank adapters (StyleForge and the OSASIS style LoRA)."""
