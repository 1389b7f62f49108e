"""OSASIS (Cho et al.): structural codes, the stylising decode, the SPN, mixing and the losses."""
