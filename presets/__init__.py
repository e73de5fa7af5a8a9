"""The shipped presets (TOML files beside this one; sweep specs in sweeps/): data, no code.

The repository keeps them at its top level; the wheel carries them as `tuner_tui.presets`.
"""
