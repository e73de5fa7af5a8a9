"""tuner-tui: tune small networks trained by a hand-written autograd engine, from a terminal.

What a training function of your own needs (see `tuner_tui.usercode.api`):

    from tuner_tui import Run, Stop
"""

from tuner_tui.usercode.api import Dataset, Run, Stop

__all__ = ["Dataset", "Run", "Stop"]
