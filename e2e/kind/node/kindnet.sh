#!/bin/bash
# kindnet for the offline node image (see default-cni.yaml): writes this node's CNI config for
# its podCIDR and keeps a route to every other node's podCIDR via its InternalIP.
set -u
if [[ -n ${CONTROL_PLANE_ENDPOINT:-} ]]; then
  export KUBERNETES_SERVICE_HOST=${CONTROL_PLANE_ENDPOINT%:*} KUBERNETES_SERVICE_PORT=${CONTROL_PLANE_ENDPOINT##*:}
fi
conf=/etc/cni/net.d/10-kindnet.conflist
while true; do
  nodes=$(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}') || { sleep 2; continue; }
  while read -r name cidr ip; do
    [[ -n $cidr && -n $ip ]] || continue
    if [[ $name == "$NODE_NAME" ]]; then
      want=$(printf '{"cniVersion":"0.4.0","name":"kindnet","plugins":[{"type":"ptp","ipMasq":false,"mtu":1500,"ipam":{"type":"host-local","dataDir":"/run/cni-ipam-state","routes":[{"dst":"0.0.0.0/0"}],"ranges":[[{"subnet":"%s"}]]}},{"type":"portmap","capabilities":{"portMappings":true}}]}' "$cidr")
      if [[ ! -f $conf || $(cat "$conf") != "$want" ]]; then
        printf '%s\n' "$want" >"$conf.tmp" && mv -f "$conf.tmp" "$conf" && echo "wrote $conf for $cidr"
      fi
    else
      ip route replace "$cidr" via "$ip" 2>/dev/null || echo "no route to $cidr via $ip yet"
    fi
  done <<<"$nodes"
  sleep 5
done
