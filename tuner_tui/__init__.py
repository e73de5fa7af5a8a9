"""tuner-tui: tune small networks trained by a hand-written autograd engine, from a terminal."""
