"""MLflow: opening the store, run lifecycle that never leaves a run RUNNING, logging helpers."""
