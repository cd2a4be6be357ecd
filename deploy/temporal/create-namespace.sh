#!/bin/sh
# One-shot: the namespace carepath uses, with 30 days of closed-workflow retention.
set -eu
temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1 \
  || temporal operator namespace create --namespace "$NAMESPACE" --retention 720h
echo "namespace $NAMESPACE ready"
