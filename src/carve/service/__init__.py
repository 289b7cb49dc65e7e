"""`carve serve`: the FastAPI app (one router per resource), bearer auth, limits and the job runner."""
