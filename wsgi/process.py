"""This process's id, kept current across forks without a system call per request.

uWSGI forks its workers from the master after loading the app: the hot path uses this to
tag log lines and to notice that a connection was opened by another process.
"""

import os

_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def pid() -> int:
    return _pid
