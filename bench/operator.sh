#!/usr/bin/env bash
# operator: N small web HostRoles applied at once (one `kubectl apply --server-side`) to a local
# control plane of our own (e2e/cluster/up.sh in /tmp/hostrole-bench-cluster, kwok as the
# kubelet, stopped with down.sh at the end). Nothing pinned: the API server, etcd, controllers,
# kwok and the operator share every core, for ours and for the floor alike.
# Measured:
#   ours:  seconds from the apply until every HostRole has Ready=True (polled every second);
#          the operator's peak RSS (VmHWM) and CPU seconds (utime+stime) at that point; and
#          the change of its /metrics counter hostrole_operator_api_writes_total (summed over labels)
#          during IDLE_SECONDS of nothing changing afterwards (must be 0).
#   floor: the child objects the operator wrote (ConfigMaps, Services, ServiceAccounts,
#          RoleBindings, NetworkPolicies, StatefulSets with its managed-by label), dumped,
#          stripped of server fields and moved to another namespace, applied with one
#          `kubectl apply --server-side`: seconds until every StatefulSet has all replicas ready.
#          That is the API server's own floor for the same end state.
set -euo pipefail
export BENCH_NAME=operator
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${HOSTROLES:-$(quick 50 1000)}
IDLE_SECONDS=${IDLE_SECONDS:-$(quick 20 600)}
CONVERGE_TIMEOUT=${CONVERGE_TIMEOUT:-$(quick 300 3600)}
export HOSTROLE_CLUSTER_DIR=/tmp/hostrole-bench-cluster
MANAGED=app.kubernetes.io/managed-by=hostrole-operator
KINDS=configmaps,services,serviceaccounts,rolebindings,networkpolicies,statefulsets

kc() { "$KUBECTL" --request-timeout=120s "$@"; }

cluster_up() {
  local env
  env=$(bash "$REPO/e2e/cluster/build.sh")
  eval "$env"
  KUBECTL=$K8S_BIN/kubectl
  on_exit_do "bash '$REPO/e2e/cluster/down.sh'"
  # Both runs' pods (ours, then the floor's) must fit on the fake node: a kubelet's default of
  # 110 pods would stop the run at 110 hosts.
  env=$(HOSTROLE_NODE_PODS=$((2 * N + 200)) bash "$REPO/e2e/cluster/up.sh" | tail -n 1)
  eval "$env" # export KUBECONFIG=...
  kc apply --server-side --force-conflicts -f "$REPO/crds/hostrole.dev_hostroles.yaml" >&2
  # `kubectl wait` fails at once ("accessor error") while the new CRD has no status yet.
  local i
  for ((i = 0; i < 60; i++)); do
    kc wait --for=condition=Established crd/hostroles.hostrole.dev --timeout=60s >&2 2>/dev/null && return 0
    sleep 1
  done
  die "the HostRole CRD was not established within a minute"
}

# hostroles NS: N web HostRoles, one inline page each.
hostroles() {
  local i
  for ((i = 0; i < N; i++)); do
    printf -- '---\napiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: web-%04d, namespace: %s}\n' "$i" "$1"
    printf 'spec:\n  servers:\n    web:\n      site: {files: [{path: index.html, content: "<p>web-%04d</p>"}]}\n' "$i"
  done
}

start_operator() {
  local ns=$1
  METRICS_PORT=$(free_port)
  "$OPERATOR" run --agent-image example.invalid/agent:bench \
    --metrics-addr "127.0.0.1:$METRICS_PORT" --watch-namespace "$ns" \
    >"$BENCH_TMP/operator.log" 2>&1 &
  OPERATOR_PID=$!
  track "$OPERATOR_PID"
  wait_http "http://127.0.0.1:$METRICS_PORT/metrics" 60 "$OPERATOR_PID" ||
    { tail -n 30 "$BENCH_TMP/operator.log" >&2; die "operator did not serve /metrics"; }
}

# writes_by_kind: the counter per kind and verb, one "kind verb count" per line.
writes_by_kind() {
  curl -fsS --max-time 10 "http://127.0.0.1:$METRICS_PORT/metrics" |
    sed -n 's/^hostrole_operator_api_writes_total{\(.*\)} \([0-9.e+]*\)$/\1 \2/p' |
    sed 's/[a-z]*="\([^"]*\)",\{0,1\}/\1 /g' | sort
}

writes() {
  curl -fsS --max-time 10 "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk '$1 ~ /^hostrole_operator_api_writes_total({|$)/ { s += $NF } END { printf "%d", s }'
}

# ready_hostroles NS: how many HostRoles have Ready=True.
ready_hostroles() {
  kc get hostroles.hostrole.dev -n "$1" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c '^True$' || true
}

# ready_statefulsets NS: how many StatefulSets have all their replicas ready.
ready_statefulsets() {
  kc get sts -n "$1" -o jsonpath='{range .items[*]}{.spec.replicas} {.status.readyReplicas}{"\n"}{end}' |
    awk '$1 == $2 { n++ } END { print n + 0 }'
}

# converge WHAT NS T0: polls `WHAT NS` every second until it reaches N; prints seconds since T0.
converge() {
  local what=$1 ns=$2 t0=$3 i n=0
  for ((i = 0; i < CONVERGE_TIMEOUT; i++)); do
    n=$("$what" "$ns")
    ((n >= N)) && { secs_since "$t0"; return 0; }
    ((i % 10 == 0)) && log "$what $ns: $n/$N"
    sleep 1
  done
  log "$what $ns: only $n/$N after ${CONVERGE_TIMEOUT}s"
  echo timeout
}

# floor_objects FROM TO: the operator's objects in FROM as applyable JSON for namespace TO.
floor_objects() {
  kc get "$KINDS" -n "$1" -l "$MANAGED" -o json | python3 -c '
import json, sys
to = sys.argv[1]
doc = json.load(sys.stdin)
for o in doc["items"]:
    o.pop("status", None)
    md = o["metadata"]
    for k in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
              "ownerReferences", "selfLink"):
        md.pop(k, None)
    md["namespace"] = to
    (md.get("annotations") or {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    spec = o.get("spec", {})
    if o["kind"] == "Service" and spec.get("clusterIP") != "None":
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
    if o["kind"] == "RoleBinding":
        for s in o.get("subjects", []):
            if "namespace" in s:
                s["namespace"] = to
    for t in spec.get("volumeClaimTemplates", []):
        t.pop("status", None)
json.dump({"apiVersion": "v1", "kind": "List", "items": doc["items"]}, sys.stdout)
' "$2"
}

main() {
  local suffix ours_ns floor_ns t0 ours floor hwm cpu w0 w1 objs
  need_pkgs curl procps
  bins
  tmpdir
  cluster_up
  suffix=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
  ours_ns=bench-ours-$suffix
  floor_ns=bench-floor-$suffix
  kc create namespace "$ours_ns" >&2
  kc create namespace "$floor_ns" >&2
  hostroles "$ours_ns" >"$BENCH_TMP/hostroles.yaml"
  start_operator "$ours_ns"

  t0=$(now_ns)
  kc apply --server-side -f "$BENCH_TMP/hostroles.yaml" >/dev/null
  log "applied $N HostRoles in $(secs_since "$t0") s"
  ours=$(converge ready_hostroles "$ours_ns" "$t0")
  hwm=$(proc_status "$OPERATOR_PID" VmHWM)
  cpu=$(cpu_seconds "$OPERATOR_PID")
  w0=$(writes)
  log "converged in $ours s; $w0 API writes; idle for ${IDLE_SECONDS}s"
  writes_by_kind | sed 's/^/  writes: /' >&2
  sleep "$IDLE_SECONDS"
  w1=$(writes)

  floor_objects "$ours_ns" "$floor_ns" >"$BENCH_TMP/floor.json"
  objs=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["items"]))' "$BENCH_TMP/floor.json")
  log "floor: $objs objects"
  t0=$(now_ns)
  kc apply --server-side --field-manager=bench-floor -f "$BENCH_TMP/floor.json" >/dev/null
  floor=$(converge ready_statefulsets "$floor_ns" "$t0")

  echo "operator: $w0 API writes to converge, $((w1 - w0)) during ${IDLE_SECONDS}s idle (must be 0)"
  row "s until $N HostRoles Ready" "kubectl apply --server-side -f (N HostRoles) vs ($objs child objects)" "$ours" "$floor" "<1"
  row "operator VmHWM KiB at convergence" "/proc/PID/status" "$hwm" "-" "-"
  row "operator CPU s at convergence" "/proc/PID/stat utime+stime" "$cpu" "-" "-"
  row "operator API writes to converge" "hostrole_operator_api_writes_total" "$w0" "$objs" "-"
  row "API writes during ${IDLE_SECONDS}s idle (must be 0)" "hostrole_operator_api_writes_total delta" "$((w1 - w0))" "-" "-"
}

main "$@"
