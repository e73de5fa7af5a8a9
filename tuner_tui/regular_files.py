"""Reading files a user or another process put there, safely: only regular files, never more than a
bound. A FIFO would block the reader forever, a link to /dev/zero would never end, and an endless
line would fill memory; each is refused or cut short with a one-line reason instead."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeFile(OSError):
    """Not a regular file, or larger than the reader allows; `str()` is one line."""


def read_regular(path: Path, *, limit: int, offset: int = 0) -> bytes:
    """At most `limit` bytes of regular file `path` from byte `offset` (fewer at its end).

    UnsafeFile for a FIFO, a device, a socket or a folder (checked on the opened file, so a link
    swapped in meanwhile is caught too); OSError when it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeFile(f"{path}: not a regular file ({_kind(mode)})")
        if offset:
            os.lseek(fd, offset, os.SEEK_SET)
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a plain file"
