"""pathlab's Optuna sweeper: hydra-optuna-sweeper, resumable (lives here because Hydra loads
plugins only from the hydra_plugins namespace package)."""
