{{/* The name every object carries. */}}
{{- define "nvshare.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "nvshare.labels" -}}
app.kubernetes.io/name: {{ include "nvshare.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* What selects the node pods (fixed for the life of a release). */}}
{{- define "nvshare.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nvshare.name" . }}
app.kubernetes.io/component: node
{{- end -}}

{{- define "nvshare.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "nvshare.socket" -}}
{{ .Values.hostPaths.socketDir }}/scheduler.sock
{{- end -}}
