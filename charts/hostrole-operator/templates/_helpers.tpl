{{/* The chart's name, or nameOverride: app.kubernetes.io/name of the operator's objects. */}}
{{- define "hostrole.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects: fullnameOverride, else the release name followed by the
name (once, when the release name already contains it). */}}
{{- define "hostrole.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "hostrole.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "hostrole.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Never change these on a live release: a Deployment's selector is immutable (so
nameOverride is chosen at install). */}}
{{- define "hostrole.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hostrole.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hostrole.labels" -}}
{{ include "hostrole.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: hostrole
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "hostrole.chart" . }}
{{- end -}}

{{/* Labels of the operator pods: podLabels added to the chart's, which they may not replace
where the Deployment, Service, PDB and NetworkPolicy select by them. */}}
{{- define "hostrole.podLabels" -}}
{{- $selector := include "hostrole.selectorLabels" . | fromYaml -}}
{{- $labels := include "hostrole.labels" . | fromYaml -}}
{{- toYaml (merge $selector (deepCopy (.Values.podLabels | default dict)) $labels) -}}
{{- end -}}

{{/* The operator's ServiceAccount. With serviceAccount.create=false it must be named: the
chart binds the operator's (Cluster)Role to it, and would otherwise grant it to the namespace's
`default` ServiceAccount, which every pod there runs as unless told otherwise. */}}
{{- define "hostrole.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hostrole.fullname" .) .Values.serviceAccount.name -}}
{{- else if .Values.serviceAccount.name -}}
{{- .Values.serviceAccount.name -}}
{{- else -}}
{{- fail "serviceAccount.name is required when serviceAccount.create=false: name the existing ServiceAccount (in the release namespace) the operator runs as; the chart binds the operator's RBAC to it" -}}
{{- end -}}
{{- end -}}

{{/*
An image reference: [registry/]repository, then @digest when a digest is given (the tag is then
ignored, so that what runs is exactly what was pinned), else :tag (default: the appVersion).
The registry is the image's own, else global.imageRegistry (as umbrella charts set it).
Call with (dict "image" .Values.image "root" .).
*/}}
{{- define "hostrole.imageRef" -}}
{{- $global := .root.Values.global | default dict -}}
{{- $registry := .image.registry | default $global.imageRegistry | default "" -}}
{{- $repository := .image.repository -}}
{{- if $registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "hostrole.image" -}}
{{- include "hostrole.imageRef" (dict "image" .Values.image "root" .) -}}
{{- end -}}

{{- define "hostrole.agentImage" -}}
{{- include "hostrole.imageRef" (dict "image" .Values.agent.image "root" .) -}}
{{- end -}}

{{/* Pull secrets of the operator (and test) pods: imagePullSecrets, then global.imagePullSecrets
(names or {name: ...} objects, as umbrella charts write them), without duplicates. */}}
{{- define "hostrole.imagePullSecrets" -}}
{{- $global := .Values.global | default dict -}}
{{- $names := list -}}
{{- range (concat (.Values.imagePullSecrets | default list) ($global.imagePullSecrets | default list)) -}}
{{- $name := . -}}
{{- if kindIs "map" . }}{{ $name = .name }}{{ end -}}
{{- if and $name (not (has $name $names)) }}{{ $names = append $names $name }}{{ end -}}
{{- end -}}
{{- range $names }}
- name: {{ . }}
{{- end -}}
{{- end -}}

{{/* Pull secrets of host pods, as the operator's flag: agent.imagePullSecrets, else
global.imagePullSecrets. Host pods run in the HostRoles' namespaces: the Secrets must exist there. */}}
{{- define "hostrole.agentImagePullSecrets" -}}
{{- $global := .Values.global | default dict -}}
{{- $names := list -}}
{{- range (.Values.agent.imagePullSecrets | default $global.imagePullSecrets | default list) -}}
{{- $name := . -}}
{{- if kindIs "map" . }}{{ $name = .name }}{{ end -}}
{{- if and $name (not (has $name $names)) }}{{ $names = append $names $name }}{{ end -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}

{{/* Security contexts of the operator and test pods and containers: securityContext and
podSecurityContext (by default the restricted Pod Security Standard). A key set to null in the
values is left out (Helm drops it), so a platform that assigns user ids (OpenShift) can unset
runAsUser/runAsGroup. */}}
{{- define "hostrole.containerSecurityContext" -}}
{{- toYaml (.Values.securityContext | default dict) -}}
{{- end -}}

{{- define "hostrole.podSecurityContext" -}}
{{- toYaml (.Values.podSecurityContext | default dict) -}}
{{- end -}}

{{/* The ClusterRole host agents are bound to (per namespace) to report client results. */}}
{{- define "hostrole.agentClusterRole" -}}
{{ include "hostrole.fullname" . }}-agent
{{- end }}

{{/* Labels of the helm-test objects: not the operator's selector labels. */}}
{{- define "hostrole.testLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" (include "hostrole.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: test
app.kubernetes.io/part-of: hostrole
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "hostrole.chart" . }}
{{- end -}}
