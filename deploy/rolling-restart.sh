#!/bin/sh
# Restart every running wsgiserve@ instance, one at a time, for a deploy with no master ever
# down for the whole site (deploy/wsgiserve@.service behind deploy/nginx-instances.conf).
# `systemctl restart` of a Type=notify unit returns only once the new master has sent
# READY=1 (its workers have loaded the new code), or fails; a failure stops the script
# with the other instances still serving the old code.
#   sudo deploy/rolling-restart.sh            # all running instances
#   sudo deploy/rolling-restart.sh 1 2        # these instances, in this order
# For new code on one master, `systemctl reload wsgiserve@N` (HUP) is enough; restart
# when the Python interpreter or wsgiserve itself changed.
set -eu

if [ "$#" -gt 0 ]; then
    instances="$*"
else
    instances=$(systemctl list-units --plain --no-legend --state=active 'wsgiserve@*.service' \
        | awk '{ sub(/^wsgiserve@/, "", $1); sub(/\.service$/, "", $1); print $1 }')
fi
[ -n "$instances" ] || { echo "no running wsgiserve@ instance" >&2; exit 1; }

for name in $instances; do
    echo "restarting wsgiserve@$name"
    systemctl restart "wsgiserve@$name.service"
    systemctl is-active --quiet "wsgiserve@$name.service"
done
echo "restarted: $instances"
