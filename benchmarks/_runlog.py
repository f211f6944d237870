"""A CSV file of finished runs, appended to as each run ends, for resumable studies.

A study calls ``done(key)`` before a run and ``write(row)`` after it: an
interrupted study loses at most the runs in flight, and rerunning it skips
every row already in the file. Each row records the machine's load and the
CPU seconds of the run, since the machine is shared.
"""

import csv
import fcntl
import os
import resource


def cpu_seconds():
    """CPU time of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class RunLog:
    """Rows of ``fields`` in ``path``; ``key_fields`` identify a run."""

    def __init__(self, path, fields, key_fields):
        self.path = path
        self.fields = list(fields) + ["cpu_s", "wall_s", "load1"]
        self.key_fields = list(key_fields)
        self.rows = []
        if os.path.exists(path):
            with open(path, newline="") as f:
                self.rows = list(csv.DictReader(f))
        else:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        self._keys = {self.key(row) for row in self.rows}

    def reload(self):
        """Re-read the file (rows other processes appended)."""
        with open(self.path, newline="") as f:
            self.rows = list(csv.DictReader(f))
        self._keys = {self.key(row) for row in self.rows}

    def key(self, row):
        return tuple(str(row[name]) for name in self.key_fields)

    def done(self, **key):
        return self.key(key) in self._keys

    def write(self, row):
        row = {name: row.get(name, "") for name in self.fields}
        # Several worker processes may append to one file: one row at a time.
        with open(self.path, "a", newline="") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            csv.DictWriter(f, self.fields).writerow(row)
            f.flush()
            os.fsync(f.fileno())
            fcntl.flock(f, fcntl.LOCK_UN)
        self.rows.append({k: str(v) for k, v in row.items()})
        self._keys.add(self.key(row))
