"""Runs without a UI: presets, the results store, the shared run path and the training process."""
