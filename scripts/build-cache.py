#!/usr/bin/env python3
"""Keeps a build cache valid across fresh clones (scripts/test.sh with TAPELOG_CACHE set).

Cargo decides whether a crate of the workspace must be rebuilt from the modification times of
its source files. A fresh clone gives every file the time of the clone, newer than anything in
a cached target directory, so every workspace crate would be rebuilt even when nothing changed.

`restore STATE` runs before the build: for every file git tracks, when its content hashes to
what STATE recorded, its modification time is set back to the one STATE recorded (the file is
the one the cache was built from); any other file keeps its new time, so cargo rebuilds what
depends on it. `restore` then writes STATE anew from the files as they are now, before
anything is built: if the build that follows is interrupted, the next run still sees which
files the cache may have been built from, never an older content under an old time.

Standard library only: the project's Python needs are this file and the asciinema venv.
"""

import hashlib
import json
import os
import subprocess
import sys


def tracked_files():
    out = subprocess.run(
        ["git", "ls-files", "-z"], check=True, capture_output=True
    ).stdout
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def restore(state_path):
    try:
        with open(state_path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        saved = {}
    restored = changed = 0
    now = {}
    for path in tracked_files():
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        h = digest(path)
        old = saved.get(path)
        if isinstance(old, list) and len(old) == 2 and old[0] == h:
            os.utime(path, ns=(int(old[1]), int(old[1])))
            restored += 1
        else:
            changed += 1
        now[path] = [h, os.stat(path).st_mtime_ns]
    tmp = state_path + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(state_path)), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(now, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, state_path)
    print(f"build cache: {restored} files as cached, {changed} new or changed")


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "restore":
        print("usage: build-cache.py restore STATE_FILE", file=sys.stderr)
        return 2
    restore(sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
