"""Carve's ingest pipeline: config, readers, video, segmentation, Ray stages, CLI, service."""
