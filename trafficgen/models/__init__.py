"""Flow classes: the Python side of each model (parameters in, epoch schedules out)."""
