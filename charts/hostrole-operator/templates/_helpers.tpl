{{/* Full name of the release's objects. */}}
{{- define "hostrole.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hostrole.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hostrole.labels" -}}
{{ include "hostrole.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: hostrole
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hostrole.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hostrole.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
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

{{/* The restricted Pod Security Standard, for the operator container and the test pod. */}}
{{- define "hostrole.containerSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
readOnlyRootFilesystem: true
runAsNonRoot: true
{{- end -}}

{{- define "hostrole.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The ClusterRole host agents are bound to (per namespace) to report client results. */}}
{{- define "hostrole.agentClusterRole" -}}
{{ include "hostrole.fullname" . }}-agent
{{- end }}

{{/* Labels of the helm-test objects: not the operator's selector labels. */}}
{{- define "hostrole.testLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: test
app.kubernetes.io/part-of: hostrole
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
