"""Your own training code in tuner-tui: model files, the `Run` your function is given, and the child
process it runs in (so it fails, hangs or prints alone, never in tuner-tui's own processes)."""
