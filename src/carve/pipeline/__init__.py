"""`carve run`: the Ray Data stages (`stages`), joining or starting Ray (`ray_env`) and the DAG (`run`)."""
