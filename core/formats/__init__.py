"""Every file format StyleSmith writes or reads, each with its one reader (docs/formats.md)."""
