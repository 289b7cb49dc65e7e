"""faiss k-means and hierarchical k-means, near-duplicate marking, balancing, the shard cut and versioned clusterings."""
