"""Peak resident memory of the current process (stdlib only: the llama.cpp peer must not import torch)."""

from __future__ import annotations

import resource
import sys


def peak_rss_mib() -> float:
    """This process's peak RSS in MiB: VmHWM on Linux, else ru_maxrss.

    VmHWM belongs to the process image: ru_maxrss also keeps the peak of the image before exec, which for
    a child started with vfork is the parent's (a benchmark parent that imported torch would show through).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
