"""Optuna: the study store, the per-trial pruning callback, the sweep's summary."""
