"""`tuner-tui watch STORAGE [--study NAME]`: read any Optuna study in the terminal, read-only.

The storage and the study are checked here, before the app opens, so a wrong path or name is one
line and exit code 2; then the watch app lists the studies (or opens the one named, or the only one).
"""

from __future__ import annotations

import argparse

from tuner_tui.commands.common import BadInput
from tuner_tui.sweeps.storages import StudyError, shown_url, storage_url
from tuner_tui.sweeps.study_listing import list_studies


def watch_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The storage URL and study to open (None: pick from a list), checked to be readable."""
    url = storage_url(args.storage_arg)
    try:
        names = [listing.name for listing in list_studies(url)]
    except StudyError as error:
        raise BadInput(str(error)) from None
    if not names:
        raise BadInput(f"no studies in {shown_url(url)}")
    if args.study is not None and args.study not in names:
        raise BadInput(f"--study: no study named {args.study!r} in {shown_url(url)}; studies: {', '.join(names)}")
    return url, args.study if args.study is not None else (names[0] if len(names) == 1 else None)
