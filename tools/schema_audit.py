#!/usr/bin/env python3
"""Independent schema audit of a felhom-pve-sim request log.

Reads the JSON array served by `GET /_sim/requests` (file argument or stdin) and checks, with the
stdlib-only validator in reference/pve_schema.py (a port of PVE::JSONSchema written independently
of our Rust code):

- every request that the simulator did not answer with 400 has parameters valid for its method
  (so the client only sends what PVE 9.1 accepts, and the simulator's own validator did not let an
  invalid request through);
- every 200 response's `data` validates against the method's `returns` schema.

Prints one line per problem and a closing `N passed, N failed` line; exits 1 on any problem.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'reference'))
import pve_schema as ps  # noqa: E402


def audit(entries, api):
    problems = []
    checked = 0
    for e in entries:
        method, path = e['method'], e['path']
        if path.startswith('/api2/json'):
            path = path[len('/api2/json'):]
        tmpl, info, _ = api.find(method, path)
        if info is None:
            continue  # answered 501 by design
        checked += 1
        params = {k: v for k, v in (e.get('params') or {}).items()}
        if e.get('status') != 400:
            errors, _notes = api.validate(method, path, params)
            if errors:
                problems.append('%s %s: request invalid: %s' % (method, path, json.dumps(errors, sort_keys=True)))
        if e.get('status') == 200 and 'returns' in info:
            body = e.get('response')
            data = body.get('data') if isinstance(body, dict) else None
            errors, notes = {}, []
            ps.check_prop(data, info['returns'], '', errors, notes)
            if errors:
                problems.append('%s %s: response invalid: %s' % (method, path, json.dumps(errors, sort_keys=True)))
    return checked, problems


def main(argv):
    text = open(argv[1]).read() if len(argv) > 1 else sys.stdin.read()
    entries = json.loads(text)
    if isinstance(entries, dict) and 'data' in entries:
        entries = entries['data']
    checked, problems = audit(entries, ps.Schema())
    for p in problems:
        print(p)
    print('schema audit: %d passed, %d failed' % (checked - len(problems), len(problems)))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
