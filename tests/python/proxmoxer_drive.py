#!/usr/bin/env python3
"""Drive felhom-pve-sim with Python's proxmoxer, unchanged, as a third-party PVE client would.

Environment: SIM_URL (https://127.0.0.1:PORT), SIM_TOKEN (user@realm!tokenid=secret),
SIM_CA (PEM file of the simulator's certificate), SIM_NODE, SIM_VMID.
Prints one JSON object with what it observed; exits non-zero on the first unexpected result.
"""

import json
import os
import sys
import urllib.parse

from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks


def main():
    url = urllib.parse.urlparse(os.environ['SIM_URL'])
    user_token, secret = os.environ['SIM_TOKEN'].rsplit('=', 1)
    user, token_name = user_token.split('!', 1)
    node = os.environ['SIM_NODE']
    vmid = int(os.environ['SIM_VMID'])
    prox = ProxmoxAPI(url.hostname, port=url.port, user=user, token_name=token_name,
                      token_value=secret, verify_ssl=os.environ['SIM_CA'], backend='https',
                      timeout=10)
    out = {}
    out['version'] = prox.version.get()['release']
    guests = prox.nodes(node).lxc.get()
    out['guests'] = sorted(g['vmid'] for g in guests)
    assert vmid in out['guests'], 'guest %d not listed' % vmid
    ct = prox.nodes(node).lxc(vmid)

    # config round trip: description comes back with PVE's trailing newline
    before = ct.config.get()
    ct.config.put(description='set by proxmoxer', digest=before['digest'])
    after = ct.config.get()
    out['description'] = after['description']
    out['digest_changed'] = after['digest'] != before['digest']
    out['hwaddr_kept'] = before.get('net0') == after.get('net0')

    # snapshot -> rollback -> delete, each task waited with proxmoxer's own helper
    statuses = []
    for call in (lambda: ct.snapshot.post(snapname='pmxsnap', description='from proxmoxer'),
                 lambda: ct.snapshot('pmxsnap').rollback.post(),
                 lambda: ct.snapshot('pmxsnap').delete()):
        upid = call()
        decoded = Tasks.decode_upid(upid)
        assert decoded['node'] == node, decoded
        status = Tasks.blocking_status(prox, upid, timeout=30, polling_interval=0.1)
        statuses.append([decoded['type'], status['status'], status.get('exitstatus')])
    out['tasks'] = statuses
    out['snapshots_after'] = sorted(s['name'] for s in ct.snapshot.get())
    log = prox.nodes(node).tasks(upid).log.get()
    out['last_log_line'] = log[-1]['t']

    # a name PVE rejects: proxmoxer surfaces the 400 with PVE's per-parameter errors
    try:
        ct.snapshot.post(snapname='x')
        out['bad_name'] = 'accepted'
    except ResourceException as e:
        out['bad_name'] = {'status': e.status_code, 'errors': e.errors}
    print(json.dumps(out, sort_keys=True))


if __name__ == '__main__':
    sys.exit(main())
