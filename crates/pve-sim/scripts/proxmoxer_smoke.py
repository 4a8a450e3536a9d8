#!/usr/bin/env python3
"""Smoke test: drive felhom-pve-sim with the unmodified proxmoxer client.

Usage: felhom-pve-sim --state DIR --guests 3 > ready.json &  then  proxmoxer_smoke.py ready.json DIR
Exits non-zero if any 200 answer violated the response schema.
"""
import json, sys, time, requests
from proxmoxer import ProxmoxAPI
ready = json.load(open(sys.argv[1]))  # the ready line, saved to a file
url = ready['url']; port = int(url.rsplit(':',1)[1])
tok = ready['token']; tid, secret = tok.rsplit('=',1); user, name = tid.split('!')
px = ProxmoxAPI('127.0.0.1', port=port, user=user, token_name=name, token_value=secret, verify_ssl=sys.argv[2] + '/pve-ssl.pem', service='PVE')
rt = ready['root_token']; rtid, rsec = rt.rsplit('=',1); ru, rn = rtid.split('!')
root = ProxmoxAPI('127.0.0.1', port=port, user=ru, token_name=rn, token_value=rsec, verify_ssl=sys.argv[2] + '/pve-ssl.pem')
n = px.nodes('pve')
def wait(upid):
    while True:
        s = n.tasks(upid).status.get()
        if s['status'] == 'stopped': return s
        time.sleep(0.05)
print(px.version.get())
print(px.cluster.resources.get(type='vm')[:1])
print(n.status.get()['loadavg'])
print(n.lxc(100).status.current.get()['status'])
up = n.lxc(101).status.start.post(); print(up, wait(up))
up = n.lxc(100).snapshot.post(snapname='before', description='hello'); print(wait(up))
print(n.lxc(100).snapshot.get())
print(n.lxc(100).config.get(snapshot='before'))
cfg = n.lxc(100).config.get(); print(cfg)
n.lxc(100).config.put(description='line1\nline2', memory=1024, digest=cfg['digest'])
print(n.lxc(100).config.get()['description'].encode())
up = n.lxc(100).snapshot('before').rollback.post(); print(wait(up))
up = n.vzdump.post(vmid='100', storage='local', compress='zstd', **{'notes-template': '{{guestname}} on {{node}}'}); print(up, wait(up))
print(n.tasks(up).log.get(limit=0))
print(n.storage('local').content.get(content='backup'))
print(n.storage.get())
print(n.storage('local').status.get())
print(px.access.permissions.get(path='/vms/100'))
print(len(n.tasks.get()), n.tasks.get(limit=2))
up = n.lxc.post(vmid=150, ostemplate='local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst', storage='local-lvm', net0='name=eth0,bridge=vmbr0,ip=dhcp'); print(wait(up))
print(n.lxc(150).config.get())
up = n.lxc(100).resize.put(disk='rootfs', size='+1G'); print(wait(up))
up = n.lxc(150).delete(); print(wait(up))
print(n.disks.list.get()[0]['health'], n.disks.smart.get(disk='/dev/sda')['health'])
print(root.nodes('pve').hardware.usb.get()[-1])
print(root.storage.post(storage='nas', type='nfs', server='10.0.0.5', export='/export/backup', content='backup'))
print(root.storage.get())
print(root.storage('nas').get())
root.storage('nas').delete()
# Storage targets: a USB filesystem with an is_mountpoint dir storage on it, pulled and back.
ca = sys.argv[2] + '/pve-ssl.pem'
def usb(**body):
    r = requests.post(url + '/_sim/usb', json=dict(uuid='5e1f-0c2a', **body), verify=ca); r.raise_for_status()
usb(present=True, mount='/mnt/usb1', by_uuid_dir=sys.argv[2] + '/by-uuid')
print(px.storage.post(storage='usb1', type='dir', path='/mnt/usb1', is_mountpoint='yes', content='backup,rootdir'))
assert n.storage('usb1').status.get()['active'] == 1
usb(present=False)
st = n.storage('usb1').status.get(); print(st)
assert st['active'] == 0 and st['total'] == 0, st
assert [s for s in n.storage.get(content='backup') if s['storage'] == 'usb1'][0]['active'] == 0
try:
    n.storage('usb1').content.get()
    sys.exit('content of an unmounted storage must fail')
except Exception as e: print("expected:", e)
try:
    px.storage.post(storage='nfs2', type='nfs', server='10.0.0.5')
    sys.exit('nfs without export must fail')
except Exception as e:
    assert "missing value for required option 'export'" in str(e), e; print("expected:", e)
usb(present=True)
archive = n.storage('local').content.get(content='backup')[0]['volid']
print(n.vzdump.extractconfig.get(volume=archive))
px.storage('usb1').delete()
try:
    n.lxc(100).status.start.post(skiplock=1)
except Exception as e: print("expected:", e)
try:
    n.lxc(999).status.current.get()
except Exception as e: print("expected:", e)
log = requests.get(url + '/_sim/requests', verify=sys.argv[2] + '/pve-ssl.pem').json()
bad = [(e['method'], e['path'], e['schema_errors']) for e in log if e['schema_errors']]
print("SCHEMA ERRORS:", json.dumps(bad, indent=1))
sys.exit(1 if bad else 0)
