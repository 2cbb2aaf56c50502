"""pathlab's Optuna sweeper (`hydra/sweeper=pathlab_optuna`), on Optuna's ask/tell API.

It lives in the hydra_plugins namespace package because Hydra loads plugins only from there.
"""
