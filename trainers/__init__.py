"""Standalone trainers that write the checkpoints StyleSmith's nodes load."""
