#!/bin/bash
# kube-router as a NetworkPolicy enforcer only (see default-cni.yaml).
set -eu
exec kube-router --run-router=false --run-firewall=true --run-service-proxy=false \
  --bgp-graceful-restart=false --hostname-override="$NODE_NAME" --metrics-port=0 --health-port=0 "$@"
