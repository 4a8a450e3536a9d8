#!/usr/bin/env python3
"""A fake `pct` for tests: `pct create VMID TEMPLATE --opt value ...` runs as root@pam on
felhom-pve-sim through its `POST /_sim/pct/create` control (what `pct create` does on a real
host), then waits for the task like the real `pct` does, exiting non-zero on failure.

Configured by the two lines the test writes after the shebang: SIM_URL and SIM_CA.
"""
import json
import sys
import time

import requests

SIM_URL = "@SIM_URL@"
SIM_CA = "@SIM_CA@"


def main(argv):
    if len(argv) < 3 or argv[0] != "create":
        print("fake pct: only `create VMID TEMPLATE [--opt value]...` is supported", file=sys.stderr)
        return 2
    params = {"vmid": argv[1], "ostemplate": argv[2]}
    rest = argv[3:]
    if len(rest) % 2:
        print("fake pct: options come in pairs", file=sys.stderr)
        return 2
    for key, value in zip(rest[::2], rest[1::2]):
        params[key.lstrip("-")] = value
    r = requests.post(SIM_URL + "/_sim/pct/create", data=params, verify=SIM_CA, timeout=10)
    body = r.json()
    if r.status_code != 200:
        print("fake pct: %s" % json.dumps(body), file=sys.stderr)
        return 1
    upid = body["data"]
    for _ in range(600):
        tasks = requests.get(SIM_URL + "/_sim/tasks", verify=SIM_CA, timeout=10).json()
        status = next((t["exitstatus"] for t in tasks if t["upid"] == upid), None)
        if status is not None:
            if status == "OK":
                return 0
            print("TASK ERROR: %s" % status, file=sys.stderr)
            return 1
        time.sleep(0.05)
    print("fake pct: task %s did not finish" % upid, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
