"""Getting events out of episodes: format readers (`sources`), frame-accurate video (`video`), event-joint segmentation (`segment`) and its evaluation against ground truth (`eval_segments`)."""
