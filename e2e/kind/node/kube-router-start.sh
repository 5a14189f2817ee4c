#!/bin/bash
# kube-router as a NetworkPolicy enforcer only (see default-cni.yaml). kind's patch gives
# CONTROL_PLANE_ENDPOINT: the API server before kube-proxy serves the kubernetes Service.
set -eu
if [[ -n ${CONTROL_PLANE_ENDPOINT:-} ]]; then
  export KUBERNETES_SERVICE_HOST=${CONTROL_PLANE_ENDPOINT%:*} KUBERNETES_SERVICE_PORT=${CONTROL_PLANE_ENDPOINT##*:}
fi
exec kube-router --run-router=false --run-firewall=true --run-service-proxy=false \
  --hostname-override="$NODE_NAME" --metrics-port=0 --health-port=0 "$@"
