"""Peak resident memory of a block of code, for the benchmarks (Linux /proc)."""

import threading
import time


def rss():
    """Resident set size of this process, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss():
    """Highest RSS this process has had (VmHWM), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak RSS (bytes) above the RSS at entry, sampled by a thread every 5 ms.

    ``above_base`` is what the block itself held at its worst (sampling can
    miss a spike shorter than the interval).
    """

    def __init__(self, interval=0.005):
        self.interval = interval

    def __enter__(self):
        self.base = rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())
        self.above_base = self.peak - self.base
