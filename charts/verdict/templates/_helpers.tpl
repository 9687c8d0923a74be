{{/* Names, labels and the wiring values shared by the templates. */}}

{{- define "verdict.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "verdict.fullname" -}}
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

{{- define "verdict.selectorLabels" -}}
app.kubernetes.io/name: {{ include "verdict.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "verdict.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "verdict.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: verdict
{{- end }}

{{- define "verdict.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "verdict.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "verdict.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding the API token: the user's, or the one the chart generates. */}}
{{- define "verdict.apiTokenSecret" -}}
{{- default (printf "%s-api-token" (include "verdict.fullname" .)) .Values.apiToken.existingSecret }}
{{- end }}

{{/* Where the pod mounts things; the Deployment and the tests read the same paths. */}}
{{- define "verdict.analysesDir" -}}/etc/verdict/analyses{{- end }}
{{- define "verdict.apiTokenDir" -}}/etc/verdict/api-token{{- end }}
{{- define "verdict.grafanaTokenDir" -}}/etc/verdict/grafana-token{{- end }}
{{- define "verdict.dataDir" -}}/var/lib/verdict{{- end }}

{{/* The namespaces the controller and the strategies act in ("" alone: every namespace). */}}
{{- define "verdict.targetNamespaces" -}}
{{- if .Values.controller.allNamespaces }}
{{- list "" | toJson }}
{{- else if .Values.controller.namespaces }}
{{- .Values.controller.namespaces | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* Leader election: only the controller elects a leader, and only with more than one pod. */}}
{{- define "verdict.leaderElection" -}}
{{- if and .Values.controller.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* Shards: the controller's Rollouts split across replicas, a Lease per shard. */}}
{{- define "verdict.shards" -}}
{{- if and .Values.controller.enabled (gt (int (.Values.controller.shards | default 1)) 1) }}true{{ end }}
{{- end }}

{{/*
The RBAC rules for the namespaces Verdict acts in, from files/permissions.json (generated from
strategies/kube/permissions.py, the one list of the Kubernetes calls Verdict makes). Identical rules
shared by two features appear once.
*/}}
{{- define "verdict.rules" -}}
{{- $groups := .Files.Get "files/permissions.json" | fromJson }}
{{- $rules := list }}
{{- if .Values.controller.enabled }}
{{- $rules = concat $rules (index $groups "controller") }}
{{- end }}
{{- if .Values.strategies.enabled }}
{{- $rules = concat $rules (index $groups "strategies") }}
{{- end }}
{{- $out := list }}
{{- range $rules }}
{{- $out = append $out (dict "apiGroups" (list .apiGroup) "resources" .resources "verbs" .verbs) }}
{{- end }}
{{- uniq $out | toYaml }}
{{- end }}

{{- define "verdict.leaseRules" -}}
{{- $groups := .Files.Get "files/permissions.json" | fromJson }}
{{- $out := list }}
{{- $rules := index $groups "leaderElection" }}
{{- if include "verdict.shards" . }}
{{- $rules = concat $rules (index $groups "shards") }}
{{- end }}
{{- range $rules }}
{{- $out = append $out (dict "apiGroups" (list .apiGroup) "resources" .resources "verbs" .verbs) }}
{{- end }}
{{- $out | toYaml }}
{{- end }}

{{/* Names of the analyses served, for the template's default argument. */}}
{{- define "verdict.defaultAnalysis" -}}
{{- if .Values.analysisTemplate.analysis }}
{{- .Values.analysisTemplate.analysis }}
{{- else if .Values.analyses }}
{{- $first := index .Values.analyses (first (keys .Values.analyses | sortAlpha)) }}
{{- if kindIs "string" $first }}
{{- (fromYaml $first).name }}
{{- else }}
{{- $first.name }}
{{- end }}
{{- else }}
{{- (.Files.Get "files/checkout.yaml" | fromYaml).name }}
{{- end }}
{{- end }}

{{/* Refuse combinations that cannot work, with a message naming the values to change. */}}
{{- define "verdict.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (eq .Values.store.type "sqlite") }}
{{- fail "replicaCount > 1 needs store.type=postgresql: a SQLite file cannot be shared by several pods" }}
{{- end }}
{{- if and (eq .Values.store.type "postgresql") (not .Values.store.postgresql.existingSecret) }}
{{- fail "store.type=postgresql needs store.postgresql.existingSecret: a Secret holding the PostgreSQL URL" }}
{{- end }}
{{- if and .Values.grafana.url (not .Values.grafana.existingSecret) }}
{{- fail "grafana.url needs grafana.existingSecret: a Secret holding a Grafana service account token" }}
{{- end }}
{{- if and .Values.analysisTemplate.enabled (ge (float64 .Values.serve.lookBudget) (float64 .Values.analysisTemplate.timeoutSeconds)) }}
{{- fail "serve.lookBudget must stay under analysisTemplate.timeoutSeconds (about 2 s under it), or Argo times out before Verdict answers" }}
{{- end }}
{{- if and .Values.controller.allNamespaces .Values.controller.namespaces }}
{{- fail "controller.allNamespaces and controller.namespaces exclude each other: give one" }}
{{- end }}
{{- end }}
