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
files the cache may have been built from, never an older content under an old time. Last,
every directory gets the newest time of the tracked files under it (`restore_dirs`).

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
    restore_dirs(now)
    tmp = state_path + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(state_path)), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(now, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, state_path)
    print(f"build cache: {restored} files as cached, {changed} new or changed")


def restore_dirs(files):
    """Gives every directory that holds tracked files the newest time of what it holds.

    A build script's `rerun-if-changed=DIR` makes cargo compare the newest time found under
    DIR, directories included, with its last run; a fresh clone's directories are as new as
    the clone, so without this the build script would run again (and the crate, with all that
    depends on it, be rebuilt) although nothing in DIR changed. A changed file's new time still
    reaches every directory above it.
    """
    newest = {}
    for path, (_, mtime) in files.items():
        parent = os.path.dirname(path)
        while parent:
            if newest.get(parent, -1) < mtime:
                newest[parent] = mtime
            parent = os.path.dirname(parent)
    for d in sorted(newest, key=lambda p: p.count(os.sep), reverse=True):
        try:
            os.utime(d, ns=(newest[d], newest[d]))
        except OSError:
            pass


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "restore":
        print("usage: build-cache.py restore STATE_FILE", file=sys.stderr)
        return 2
    restore(sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
