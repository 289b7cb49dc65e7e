"""Embedders, faiss k-means and hierarchical k-means, near-duplicate marking, balancing, audit."""
