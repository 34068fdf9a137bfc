"""redis-py's Sentinel client writing through an automatic failover.

Usage: sentinel_through_failover.py CLUSTER_NAME STOP_FILE SECONDS NODE_PORT...

Writes keys w0, w1, ... through the client's master connection until STOP_FILE exists (or
SECONDS pass), and on every error lets the client find the master again through the nodes
(posing as sentinels). Prints `master HOST:PORT` whenever the master it finds changes, and
`acked KEY` for every write the master acknowledged; exits non-zero if it never wrote.
"""

import os
import sys
import time

from redis.exceptions import RedisError
from redis.sentinel import Sentinel


def main() -> int:
    name, stop_file, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    ports = [int(p) for p in sys.argv[4:]]
    sentinel = Sentinel([("127.0.0.1", p) for p in ports], socket_timeout=0.5)
    master = sentinel.master_for(name, socket_timeout=0.5, decode_responses=True)
    deadline = time.monotonic() + seconds
    last_master = None
    acked = 0
    i = 0
    while time.monotonic() < deadline and not os.path.exists(stop_file):
        key = f"w{i}"
        i += 1
        try:
            if master.set(key, "v"):
                print(f"acked {key}", flush=True)
                acked += 1
        except RedisError as e:
            print(f"error {key} {type(e).__name__}", flush=True)
            time.sleep(0.05)
        try:
            found = sentinel.discover_master(name)
        except RedisError:
            continue
        if found != last_master:
            last_master = found
            print(f"master {found[0]}:{found[1]}", flush=True)
    return 0 if acked else 1


if __name__ == "__main__":
    sys.exit(main())
