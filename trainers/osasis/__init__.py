"""The OSASIS one-shot style trainer (`python -m trainers.osasis.train`) and its parts."""
