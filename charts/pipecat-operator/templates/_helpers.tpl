{{/*
The chart name, or nameOverride.
*/}}
{{- define "pipecat-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, or "<release>-<chart>" (just the
release name when it already contains the chart name). Truncated to 63 characters (DNS label).
*/}}
{{- define "pipecat-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the objects this release creates outside its own namespace (ClusterRole,
ClusterRoleBinding, the Roles in watched namespaces): "<release namespace>-<fullname>", unique
across releases of the same name in different namespaces.
*/}}
{{- define "pipecat-operator.scopedName" -}}
{{- printf "%s-%s" .Release.Namespace (include "pipecat-operator.fullname" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/*
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "pipecat-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "pipecat-operator.labels" -}}
helm.sh/chart: {{ include "pipecat-operator.chart" . }}
{{ include "pipecat-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: pipecat-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels selecting the release's pods (immutable in the Deployment: keep them stable).
*/}}
{{- define "pipecat-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pipecat-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "pipecat-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pipecat-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image reference.
*/}}
{{- define "pipecat-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
"true" when leader election is on (asked for, or more than one replica), else "".
*/}}
{{- define "pipecat-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
The Lease the replicas elect a leader with (one per release).
*/}}
{{- define "pipecat-operator.leaseName" -}}
{{- include "pipecat-operator.fullname" . }}
{{- end }}

{{/*
"true" when the release manages the default credentials (existingSecret or apiKey), which then
live in the release namespace; else "" (each PipecatAgent reads the default Secret of its own
namespace). Fails when both are set.
*/}}
{{- define "pipecat-operator.managesCredentials" -}}
{{- if and .Values.credentials.existingSecret .Values.credentials.apiKey }}
{{- fail "credentials: set either credentials.existingSecret or credentials.apiKey, not both" }}
{{- end }}
{{- if or .Values.credentials.existingSecret .Values.credentials.apiKey }}true{{ end }}
{{- end }}

{{/*
Name of the Secret the chart creates from credentials.apiKey.
*/}}
{{- define "pipecat-operator.apiKeySecretName" -}}
{{- printf "%s-api-key" (include "pipecat-operator.fullname" .) | trunc 253 }}
{{- end }}

{{/*
Name of the default credentials Secret when the release manages it.
*/}}
{{- define "pipecat-operator.credentialsSecretName" -}}
{{- if .Values.credentials.existingSecret }}
{{- .Values.credentials.existingSecret }}
{{- else }}
{{- include "pipecat-operator.apiKeySecretName" . }}
{{- end }}
{{- end }}

{{/*
The watched namespaces, sorted and without duplicates, as a JSON list (empty: all namespaces).
*/}}
{{- define "pipecat-operator.watchNamespaces" -}}
{{- .Values.watch.namespaces | default list | uniq | sortAlpha | toJson }}
{{- end }}

{{/*
The RBAC rules on PipecatAgents and events (the same cluster-wide and per namespace).
*/}}
{{- define "pipecat-operator.agentRules" -}}
- apiGroups: ["pipecat.daily.co"]
  resources: ["pipecatagents"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["pipecat.daily.co"]
  resources: ["pipecatagents/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["pipecat.daily.co"]
  resources: ["pipecatagents/finalizers"]
  verbs: ["update"]
- apiGroups: ["pipecat.daily.co"]
  resources: ["pipecatsecretsets"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["pipecat.daily.co"]
  resources: ["pipecatsecretsets/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["pipecat.daily.co"]
  resources: ["pipecatsecretsets/finalizers"]
  verbs: ["update"]
# patch: only ever the finalizers pipecat.daily.co/credentials-in-use and
# pipecat.daily.co/secret-set-credentials-in-use, which keep a Secret until the agents and
# secret sets it must delete are gone (RBAC cannot narrow a patch to one field).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
