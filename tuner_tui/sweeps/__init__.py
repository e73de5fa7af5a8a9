"""Sweeps: search specs, the Optuna study, the trial scheduler and the cluster."""
