"""A child process that dies with its parent: Linux's PR_SET_PDEATHSIG, which the kernel acts on
even while the child is inside one long C call. (It follows the parent *thread* that started the
child: a child started from a thread that exits gets the signal then.)"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def death_signal_setter(sig: signal.Signals) -> Callable[[], None] | None:
    """A function that, called in a process, has the kernel send it `sig` when its parent dies;
    None where the platform has no such thing. Resolved here, so that calling it (for example as
    Popen's preexec_fn, between fork and exec) does nothing but one system call."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(PR_SET_PDEATHSIG, int(sig))
