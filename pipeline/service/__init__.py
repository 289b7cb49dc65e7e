"""The HTTP service (`carve serve`): app, job runner, auth, limits and read views."""
