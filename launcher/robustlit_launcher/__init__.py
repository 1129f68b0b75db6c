"""robustlit launcher: one submit/status/cancel/logs interface over local, SLURM and Kubernetes backends."""
