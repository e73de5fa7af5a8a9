"""The shipped presets (TOML files beside this one; sweep specs in sweeps/), and the two example model
files with their training code (lab4_student, torch_mlp): examples for users, imported by no module.

The repository keeps them at its top level; the wheel carries them as `tuner_tui.presets`.
"""
