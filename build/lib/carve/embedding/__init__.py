"""Event embeddings: open_clip / MiniLM / offline descriptor embedders, the motion descriptor and the fused `emb`."""
