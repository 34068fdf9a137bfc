"""redis-py's Sentinel client against replikv nodes posing as sentinels.

Usage: sentinel_discovery.py CLUSTER_NAME EXPECTED_LEADER_PORT KEY VALUE NODE_PORT...

Asks the nodes (as sentinels) for the leader of CLUSTER_NAME, checks it is the node on
EXPECTED_LEADER_PORT, writes KEY=VALUE through the client's master connection and reads it
back, and lists the replicas the client discovers. Prints what it found; exits non-zero on
any mismatch.
"""

import sys

from redis.sentinel import Sentinel


def main() -> int:
    name, expected, key, value = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    ports = [int(p) for p in sys.argv[5:]]
    sentinel = Sentinel([("127.0.0.1", p) for p in ports], socket_timeout=2)
    host, port = sentinel.discover_master(name)
    print(f"master {host}:{port}")
    if int(port) != expected:
        print(f"expected the leader on port {expected}", file=sys.stderr)
        return 1
    master = sentinel.master_for(name, socket_timeout=2, decode_responses=True)
    master.set(key, value)
    got = master.get(key)
    print(f"read back {got!r}")
    if got != value:
        return 1
    print(f"replicas {sentinel.discover_slaves(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
