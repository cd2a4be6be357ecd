#!/bin/sh
# One-shot: the namespace carepath uses, with 30 days of closed-workflow retention.
set -eu
# The frontend port answers before the cluster serves requests: wait for health (2 minutes at most).
i=0
until temporal operator cluster health >/dev/null 2>&1; do
  i=$((i + 1))
  [ "$i" -lt 60 ] || { echo "Temporal not healthy after 2 minutes" >&2; exit 1; }
  sleep 2
done
temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1 \
  || temporal operator namespace create --namespace "$NAMESPACE" --retention 720h
echo "namespace $NAMESPACE ready"
