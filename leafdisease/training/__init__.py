"""Training: timm models and offline weights (models), losses, the epoch loop, optimiser and schedule (engine), the
checkpoint format (checkpoint), recipes (recipe), multi-process runs (cluster) and run logs (run_log)."""
