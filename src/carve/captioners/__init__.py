"""Event captioners: offline kinematic heuristic, OpenAI-compatible HTTP, in-process vLLM."""
