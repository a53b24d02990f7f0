#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with radosgw serving S3, IAM and STS on loopback:
# one monitor, one memstore OSD, pool size 1, every path under one temp dir.
#
#   tests/ceph/cluster.sh start DIR   -> starts it, prints `RGW_ENDPOINT=http://127.0.0.1:PORT`
#   tests/ceph/cluster.sh stop DIR    -> stops every daemon started from DIR
#
# It is also the recipe an operator can read to run stsvend against an S3-compatible STS.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: cluster.sh start|stop DIR" >&2; exit 2; }
log() { printf '[ceph] %s\n' "$*" >&2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop() {
  for pidfile in "$dir"/run/*.pid; do
    [ -f "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 0.5
  for pidfile in "$dir"/run/*.pid; do
    [ -f "$pidfile" ] || continue
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
}

if [ "$cmd" = stop ]; then
  stop
  exit 0
fi
# The ports are found free, then handed to the daemons: another process can take one in
# between (the daemon then fails to bind). Each attempt is this script run as `attempt`, so
# that any failing step ends it; the next attempt starts over with new ports.
if [ "$cmd" = start ]; then
  for attempt in 1 2 3; do
    if "$0" attempt "$dir"; then exit 0; fi
    stop
    log "the cluster did not come up (attempt $attempt); logs:"
    tail -n 5 "$dir"/log/*.log >&2 2>/dev/null || true
    rm -rf "${dir:?}"/*
  done
  log "the cluster did not come up"
  exit 1
fi
[ "$cmd" = attempt ] || { echo "usage: cluster.sh start|stop DIR" >&2; exit 2; }

mkdir -p "$dir"/{run,log,mon/a,osd/0,rgw}
fsid="$(uuidgen)"
mon_v2="$(free_port)"
mon_v1="$(free_port)"
rgw_port="$(free_port)"
conf="$dir/ceph.conf"

cat > "$conf" <<EOF
[global]
fsid = $fsid
mon initial members = a
mon host = [v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]
public network = 127.0.0.1/32
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = 1073741824
osd data = $dir/osd/\$id

[mon.a]
mon data = $dir/mon/a

[osd.0]
keyring = $dir/osd/0/keyring

[client.rgw.a]
keyring = $dir/rgw/keyring
rgw data = $dir/rgw
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw enable apis = s3, admin, sts, iam
rgw s3 auth use sts = true
rgw sts key = 0123456789abcdef
rgw dns name = 127.0.0.1
EOF

ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$dir/keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]" --fsid "$fsid" "$dir/monmap" >/dev/null

log "monitor"
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
ceph-mon -c "$conf" -i a

log "OSD (memstore)"
osd_uuid="$(uuidgen)"
osd_id="$(ceph -c "$conf" osd new "$osd_uuid")"
ceph-osd -c "$conf" -i "$osd_id" --mkfs --mkkey --no-mon-config --osd-uuid "$osd_uuid" 2>>"$dir/log/mkfs.log"
ceph -c "$conf" auth add "osd.$osd_id" osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
  -i "$dir/osd/0/keyring" >/dev/null 2>&1
ceph-osd -c "$conf" -i "$osd_id" 2>>"$dir/log/osd-start.log"

for _ in $(seq 1 100); do
  ceph -c "$conf" osd stat 2>/dev/null | grep -q "1 up" && break
  sleep 0.2
done
ceph -c "$conf" osd stat | grep -q "1 up" || { log "OSD did not come up"; exit 1; }

log "radosgw on 127.0.0.1:$rgw_port"
ceph -c "$conf" auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' \
  -o "$dir/rgw/keyring" >/dev/null
radosgw -c "$conf" -n client.rgw.a 2>>"$dir/log/rgw-start.log"
for _ in $(seq 1 150); do
  curl -fsS -o /dev/null "http://127.0.0.1:$rgw_port/" 2>/dev/null && break
  sleep 0.2
done
curl -fsS -o /dev/null "http://127.0.0.1:$rgw_port/" || { log "radosgw did not come up; see $dir/log"; exit 1; }
echo "RGW_ENDPOINT=http://127.0.0.1:$rgw_port"
echo "CEPH_CONF=$conf"
