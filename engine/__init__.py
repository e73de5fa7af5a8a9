"""The training engine: a hand-written autograd graph, a fused fast path, data and measurement.

Nothing in this package imports Textual; the CLI and the app both drive it through `tuner_tui.engine.runner`.
"""
