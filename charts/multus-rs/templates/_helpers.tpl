{{/* Names, labels and the computed values shared by the templates. */}}

{{- define "multus-rs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "multus-rs.fullname" -}}
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

{{- define "multus-rs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "multus-rs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "multus-rs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "multus-rs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: cni
{{- end }}

{{- define "multus-rs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "multus-rs.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "multus-rs.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Memory request = limit: daemonMiB + delegateConcurrency x delegateMiB (see values.yaml). */}}
{{- define "multus-rs.memory" -}}
{{- $m := .Values.resources.memory }}
{{- if $m.override }}
{{- $m.override }}
{{- else }}
{{- $concurrency := int .Values.daemonConfig.delegateConcurrency }}
{{- if lt $concurrency 1 }}
{{- fail "daemonConfig.delegateConcurrency must be at least 1" }}
{{- end }}
{{- printf "%dMi" (add (int $m.daemonMiB) (mul $concurrency (int $m.delegateMiB))) }}
{{- end }}
{{- end }}

{{/* The same requests/limits for every container, so no container makes the pod's QoS worse. */}}
{{- define "multus-rs.resources" -}}
requests:
  cpu: {{ .Values.resources.cpu.request | quote }}
  memory: {{ include "multus-rs.memory" . }}
limits:
  {{- with .Values.resources.cpu.limit }}
  cpu: {{ . | quote }}
  {{- end }}
  memory: {{ include "multus-rs.memory" . }}
{{- end }}

{{/*
daemon-config.json: daemonConfig without its null keys, plus the keys set from metrics/otlp, and
what 00-multus.conf needs: in auto mode the search dir (cniConfigDir), cniVersion and extra
capabilities from multusConf, and always daemonSocketDir (the host path the shim connects to);
with multusConf.static the daemon keeps the chart's file in place instead of generating one.
*/}}
{{- define "multus-rs.daemonConfig" -}}
{{- $cfg := dict }}
{{- range $k, $v := .Values.daemonConfig }}
{{- if not (kindIs "invalid" $v) }}
{{- $_ := set $cfg $k $v }}
{{- end }}
{{- end }}
{{- $conf := .Values.multusConf }}
{{- if $conf.static }}
{{- $_ := set $cfg "multusConfigFile" (printf "/etc/multus-rs/%s" $conf.fileName) }}
{{- else if has (toString $cfg.multusConfigFile) (list "auto" "") }}
{{- if not (hasKey $cfg "multusAutoconfigDir") }}
{{- $_ := set $cfg "multusAutoconfigDir" $cfg.cniConfigDir }}
{{- end }}
{{- if not (hasKey $cfg "cniVersion") }}
{{- $_ := set $cfg "cniVersion" $conf.cniVersion }}
{{- end }}
{{- with $conf.capabilities }}
{{- $_ := set $cfg "capabilities" . }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "daemonSocketDir" .Values.hostPaths.socketDir }}
{{- with .Values.metrics.port }}
{{- $_ := set $cfg "metricsPort" (int .) }}
{{- end }}
{{- with .Values.metrics.bindAddress }}
{{- $_ := set $cfg "metricsBindAddress" . }}
{{- end }}
{{- with .Values.otlp.endpoint }}
{{- $_ := set $cfg "otlpEndpoint" . }}
{{- end }}
{{- toPrettyJson $cfg }}
{{- end }}

{{/* Probe command: a gRPC health check on the daemon socket (see values.yaml probes). */}}
{{- define "multus-rs.probe" -}}
exec:
  command:
    - /usr/src/multus-cni/bin/install_multus
    - --probe
    - {{ .kind }}
    - --socket-dir
    - {{ .root.Values.daemonConfig.socketDir | quote }}
    - --timeout-seconds
    - {{ .probe.timeoutSeconds | quote }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end }}
