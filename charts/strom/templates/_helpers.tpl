{{/* Names and labels. */}}

{{- define "strom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every resource name; short enough for "-write-headless". */}}
{{- define "strom.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "strom.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "strom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "strom.labels" -}}
helm.sh/chart: {{ include "strom.chart" . }}
{{ include "strom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: strom
{{- end -}}

{{/* Labels of a role's resources: include "strom.roleLabels" (list $ "write"). */}}
{{- define "strom.roleLabels" -}}
{{ include "strom.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "strom.roleSelectorLabels" -}}
{{ include "strom.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "strom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "strom.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "strom.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Secrets. */}}

{{- define "strom.secretName" -}}
{{- include "strom.fullname" . -}}
{{- end -}}

{{/* Whether the chart creates the Secret (PostgreSQL URL or S3 keys given in values). */}}
{{- define "strom.createSecret" -}}
{{- if or .Values.catalog.postgres.url .Values.objstore.s3.accessKeyId -}}true{{- end -}}
{{- end -}}

{{/* Whether static S3 keys are configured (else the AWS default credential chain). */}}
{{- define "strom.s3StaticKeys" -}}
{{- if or .Values.objstore.s3.existingSecret .Values.objstore.s3.accessKeyId -}}true{{- end -}}
{{- end -}}

{{/*
Fails the render with a message naming the value to set. Included by the
ConfigMap, which every release renders.
*/}}
{{- define "strom.validate" -}}
{{- $v := .Values -}}
{{- if not $v.objstore.s3.bucket -}}
{{- fail "strom: objstore.s3.bucket is required: the S3 bucket that holds every segment (it must exist)" -}}
{{- end -}}
{{- if and $v.catalog.postgres.url $v.catalog.postgres.existingSecret -}}
{{- fail "strom: set either catalog.postgres.url or catalog.postgres.existingSecret, not both" -}}
{{- end -}}
{{- if not (or $v.catalog.postgres.url $v.catalog.postgres.existingSecret) -}}
{{- fail "strom: catalog.postgres.url or catalog.postgres.existingSecret is required: the PostgreSQL catalog that every frontend shares" -}}
{{- end -}}
{{- if ne (not $v.objstore.s3.accessKeyId) (not $v.objstore.s3.secretAccessKey) -}}
{{- fail "strom: objstore.s3.accessKeyId and objstore.s3.secretAccessKey go together: set both, or neither for the AWS default credential chain (IRSA)" -}}
{{- end -}}
{{- if and $v.objstore.s3.accessKeyId $v.objstore.s3.existingSecret -}}
{{- fail "strom: set either objstore.s3.accessKeyId/secretAccessKey or objstore.s3.existingSecret, not both" -}}
{{- end -}}
{{- if and $v.tls.enabled (not $v.tls.secretName) -}}
{{- fail "strom: tls.secretName is required with tls.enabled: a kubernetes.io/tls Secret with tls.crt and tls.key" -}}
{{- end -}}
{{- if lt (int $v.write.replicas) 1 -}}
{{- fail "strom: write.replicas must be at least 1: the write frontends lead every bucket" -}}
{{- end -}}
{{- if and $v.read.enabled $v.read.autoscaling.enabled (gt (int $v.read.autoscaling.minReplicas) (int $v.read.autoscaling.maxReplicas)) -}}
{{- fail "strom: read.autoscaling.minReplicas must not exceed read.autoscaling.maxReplicas" -}}
{{- end -}}
{{- if and $v.read.enabled $v.read.autoscaling.enabled (not (or $v.read.autoscaling.targetCPUUtilizationPercentage $v.read.autoscaling.targetMemoryUtilizationPercentage)) -}}
{{- fail "strom: read.autoscaling needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" -}}
{{- end -}}
{{- end -}}

{{/*
Strom's configuration file. Secrets stay out of it: ${VAR} references are
replaced from the container's environment (-config.expand-env).
*/}}
{{- define "strom.config" -}}
{{- $v := .Values -}}
{{- $s3 := dict "bucket" $v.objstore.s3.bucket -}}
{{- with $v.objstore.s3.endpoint }}{{ $_ := set $s3 "endpoint" . }}{{ end -}}
{{- with $v.objstore.s3.region }}{{ $_ := set $s3 "region" . }}{{ end -}}
{{- with $v.objstore.s3.prefix }}{{ $_ := set $s3 "prefix" . }}{{ end -}}
{{- if not (kindIs "invalid" $v.objstore.s3.forcePathStyle) }}{{ $_ := set $s3 "force_path_style" $v.objstore.s3.forcePathStyle }}{{ end -}}
{{- if include "strom.s3StaticKeys" . -}}
{{- $_ := set $s3 "access_key_id" "${STROM_S3_ACCESS_KEY_ID}" -}}
{{- $_ := set $s3 "secret_access_key" "${STROM_S3_SECRET_ACCESS_KEY}" -}}
{{- end -}}
{{- $rest := dict "enabled" $v.lake.rest.enabled "vend_credentials" $v.lake.rest.vendCredentials -}}
{{- with $v.lake.rest.s3Endpoint }}{{ $_ := set $rest "s3_endpoint" . }}{{ end -}}
{{- $lake := dict "catalog_name" $v.lake.catalogName "rest" $rest "tiering" (dict "interval" $v.lake.tiering.interval) -}}
{{- with $v.lake.warehouse }}{{ $_ := set $lake "warehouse" . }}{{ end -}}
{{- $cfg := dict
  "data_dir" "/var/lib/strom"
  "log" (dict "level" $v.log.level "format" $v.log.format)
  "server" (dict
    "http_listen_address" (printf ":%d" (int $v.server.httpPort))
    "internal_listen_address" (printf ":%d" (int $v.server.internalPort))
    "graceful_shutdown_timeout" (printf "%ds" (int $v.server.gracefulShutdownTimeoutSeconds)))
  "catalog" (dict "backend" "postgres" "postgres" (dict "url" "${STROM_POSTGRES_URL}"))
  "objstore" (dict "backend" "s3" "s3" $s3)
  "frontend" (dict "lease_ttl" $v.frontend.leaseTTL "flush_interval" $v.frontend.flushInterval "flush_bytes" (int64 $v.frontend.flushBytes))
  "lake" $lake
-}}
{{- toYaml (mergeOverwrite $cfg (deepCopy $v.extraConfig)) -}}
{{- end -}}

{{/* Seconds Kubernetes waits for a stopping pod: include "strom.terminationGrace" (list $ .Values.write). */}}
{{- define "strom.terminationGrace" -}}
{{- $v := (index . 0).Values -}}
{{- $role := index . 1 -}}
{{- if kindIs "invalid" $role.terminationGracePeriodSeconds -}}
{{- add (int $v.server.preStopSleepSeconds) (int $v.server.gracefulShutdownTimeoutSeconds) 15 -}}
{{- else -}}
{{- int $role.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/*
The Strom container of a role: include "strom.container" (dict "ctx" $ "role" "write" "values" .Values.write).
*/}}
{{- define "strom.container" -}}
{{- $ := .ctx -}}
{{- $v := $.Values -}}
{{- $role := .values -}}
{{- $scheme := ternary "HTTPS" "HTTP" $v.tls.enabled -}}
- name: strom
  image: {{ include "strom.image" $ | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - server
    - -config.file=/etc/strom/strom.yaml
    - -config.expand-env
    - -roles={{ $role.roles }}
    {{- if eq .role "write" }}
    - -frontend.advertise-address=$(POD_NAME).{{ include "strom.fullname" $ }}-write-headless.$(POD_NAMESPACE).svc.{{ $v.clusterDomain }}:{{ $v.server.internalPort }}
    {{- end }}
    {{- if $v.tls.enabled }}
    - -server.tls-cert-file={{ $v.tls.mountPath }}/tls.crt
    - -server.tls-key-file={{ $v.tls.mountPath }}/tls.key
    {{- end }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
    {{- range $role.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: STROM_POSTGRES_URL
      valueFrom:
        secretKeyRef:
          {{- if $v.catalog.postgres.existingSecret }}
          name: {{ $v.catalog.postgres.existingSecret }}
          key: {{ $v.catalog.postgres.existingSecretKey }}
          {{- else }}
          name: {{ include "strom.secretName" $ }}
          key: postgres-url
          {{- end }}
    {{- if include "strom.s3StaticKeys" $ }}
    - name: STROM_S3_ACCESS_KEY_ID
      valueFrom:
        secretKeyRef:
          {{- if $v.objstore.s3.existingSecret }}
          name: {{ $v.objstore.s3.existingSecret }}
          key: {{ $v.objstore.s3.existingSecretAccessKeyIdKey }}
          {{- else }}
          name: {{ include "strom.secretName" $ }}
          key: s3-access-key-id
          {{- end }}
    - name: STROM_S3_SECRET_ACCESS_KEY
      valueFrom:
        secretKeyRef:
          {{- if $v.objstore.s3.existingSecret }}
          name: {{ $v.objstore.s3.existingSecret }}
          key: {{ $v.objstore.s3.existingSecretSecretAccessKeyKey }}
          {{- else }}
          name: {{ include "strom.secretName" $ }}
          key: s3-secret-access-key
          {{- end }}
    {{- end }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: http
      containerPort: {{ $v.server.httpPort }}
      protocol: TCP
    {{- if eq .role "write" }}
    - name: internal
      containerPort: {{ $v.server.internalPort }}
      protocol: TCP
    {{- end }}
  startupProbe:
    httpGet:
      path: /healthz
      port: http
      scheme: {{ $scheme }}
    {{- toYaml $v.probes.startup | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: http
      scheme: {{ $scheme }}
    {{- toYaml $v.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: http
      scheme: {{ $scheme }}
    {{- toYaml $v.probes.readiness | nindent 4 }}
  {{- if gt (int $v.server.preStopSleepSeconds) 0 }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ int $v.server.preStopSleepSeconds }}
  {{- end }}
  {{- with $role.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.containerSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: config
      mountPath: /etc/strom/strom.yaml
      subPath: strom.yaml
      readOnly: true
    - name: data
      mountPath: /var/lib/strom
    - name: tmp
      mountPath: /tmp
    {{- if $v.tls.enabled }}
    - name: tls
      mountPath: {{ $v.tls.mountPath }}
      readOnly: true
    {{- end }}
{{- end -}}

{{/*
Pod spec fields shared by every role, after the containers:
include "strom.podSpecCommon" (dict "ctx" $ "role" "write" "values" .Values.write).
*/}}
{{- define "strom.podSpecCommon" -}}
{{- $ := .ctx -}}
{{- $v := $.Values -}}
{{- $role := .values -}}
serviceAccountName: {{ include "strom.serviceAccountName" $ }}
automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
enableServiceLinks: false
terminationGracePeriodSeconds: {{ include "strom.terminationGrace" (list $ $role) }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $role.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $role.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $role.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $role.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
topologySpreadConstraints:
{{- if $role.topologySpreadConstraints }}
{{- $selector := dict "labelSelector" (dict "matchLabels" (fromYaml (include "strom.roleSelectorLabels" (list $ .role)))) }}
{{- $constraints := list }}
{{- range $role.topologySpreadConstraints }}
{{- $constraints = append $constraints (merge (deepCopy .) $selector) }}
{{- end }}
  {{- toYaml $constraints | nindent 2 }}
{{- else }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "strom.roleSelectorLabels" (list $ .role) | nindent 8 }}
{{- end }}
{{- end -}}

{{/* Volumes shared by every role, besides the data directory. */}}
{{- define "strom.volumes" -}}
{{- $v := .Values -}}
- name: config
  configMap:
    name: {{ include "strom.fullname" . }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- if $v.tls.enabled }}
- name: tls
  secret:
    secretName: {{ $v.tls.secretName }}
{{- end }}
{{- end -}}

{{/* Pod template annotations that roll the pods when the configuration or the chart's Secret changes. */}}
{{- define "strom.podAnnotations" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
checksum/config: {{ include "strom.config" $ | sha256sum }}
{{- if include "strom.createSecret" $ }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") $ | sha256sum }}
{{- end }}
{{- with $role.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
