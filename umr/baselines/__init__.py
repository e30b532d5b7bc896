"""Baselines of the paper: BM25 (Pyserini) and mGenQ; supervised rows come from user run files."""
