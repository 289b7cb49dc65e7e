"""faiss k-means and hierarchical k-means, near-duplicate marking, assignment, drift and versioned clusterings."""
