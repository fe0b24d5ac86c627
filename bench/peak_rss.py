"""Run a command; append its wall time and peak memory as one JSON line to OUT.

    python3 bench/peak_rss.py LABEL OUT -- CMD ARGS...

`rss_mb`: the command's own peak resident set (VmHWM); `tree_mb`: the peak,
sampled every 50 ms, of the resident sets of the command and every process
under it (workers and programs included); `cpu_s`: user + system CPU seconds
of the command and the children it waited for. Exits with the command's status.
"""

import json
import os
import resource
import subprocess
import sys
import time


def children_of():
    kids = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            kids.setdefault(int(fields[1]), []).append(int(pid))
        except (OSError, IndexError, ValueError):
            pass
    return kids


def rss_kb(pid, key="VmRSS"):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    label, out = sys.argv[1], sys.argv[2]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    started = time.monotonic()
    proc = subprocess.Popen(cmd)
    own = tree = 0
    while proc.poll() is None:
        own = max(own, rss_kb(proc.pid, "VmHWM"))
        kids = children_of()
        total, todo = 0, [proc.pid]
        while todo:
            pid = todo.pop()
            total += rss_kb(pid)
            todo.extend(kids.get(pid, []))
        tree = max(tree, total)
        time.sleep(0.05)
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "a") as f:
        f.write(json.dumps({"label": label, "wall_s": round(wall, 2),
                            "rss_mb": round(own / 1024, 1),
                            "tree_mb": round(tree / 1024, 1),
                            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                            "status": proc.returncode}) + "\n")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
