"""The JSON floor of an offline scan: a bare Python process reading and ``json.loads``-ing a recorded tenant's files.

Issue 14 sets the offline scan's target against this floor measured in the same run (at most 3x its time), so
the bench starts it as its own process, like ``plmon scan``, and reads its wall time, CPU and peak memory from
the kernel. Prints the files parsed and the seconds taken as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(folder: str) -> None:
    t0 = time.perf_counter()
    files = 0
    for root, _, names in os.walk(folder):
        for name in names:
            if name.endswith(".json"):
                with open(os.path.join(root, name), "rb") as fh:
                    json.loads(fh.read())
                files += 1
    print(json.dumps({"files": files, "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main(sys.argv[1])
