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

{{/* The Secret the chart creates for the tokens file and the internal secret given in values. */}}
{{- define "strom.authSecretName" -}}
{{- include "strom.fullname" . -}}-auth
{{- end -}}

{{/* Whether the chart creates the auth Secret (auth.tokens.file or auth.internalToken.value given in values). */}}
{{- define "strom.createAuthSecret" -}}
{{- if or (and .Values.auth.enabled .Values.auth.tokens.file) .Values.auth.internalToken.value -}}true{{- end -}}
{{- end -}}

{{/* Whether the internal port is guarded by a shared secret. */}}
{{- define "strom.internalToken" -}}
{{- if or .Values.auth.internalToken.value .Values.auth.internalToken.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* Where the tokens file and the internal secret are mounted. */}}
{{- define "strom.tokensDir" -}}/etc/strom/auth{{- end -}}
{{- define "strom.internalTokenDir" -}}/etc/strom/internal{{- end -}}

{{/*
Bytes of a Kubernetes quantity such as 20Gi or 500M; empty when it is not
a plain integer with an optional binary or decimal suffix.
*/}}
{{- define "strom.quantityBytes" -}}
{{- $q := toString . -}}
{{- if regexMatch "^[0-9]+(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$" $q -}}
{{- $n := int64 (regexFind "^[0-9]+" $q) -}}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 -}}
{{- mul $n (int64 (get $units (regexReplaceAll "^[0-9]+" $q ""))) -}}
{{- end -}}
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
{{- $a := $v.auth -}}
{{- if $a.enabled -}}
{{- if and $a.tokens.file $a.tokens.existingSecret -}}
{{- fail "strom: set either auth.tokens.file or auth.tokens.existingSecret, not both" -}}
{{- end -}}
{{- if not (or $a.tokens.file $a.tokens.existingSecret) -}}
{{- fail "strom: auth.tokens.file or auth.tokens.existingSecret is required with auth.enabled: the tokens file (token hashes and grants, see docs/security.md)" -}}
{{- end -}}
{{- if not (include "strom.internalToken" .) -}}
{{- fail "strom: auth.internalToken.value or auth.internalToken.existingSecret is required with auth.enabled: without it anyone who reaches the internal port may write forwarded rows without a token (make one with strom token generate)" -}}
{{- end -}}
{{- else if or $a.tokens.file $a.tokens.existingSecret -}}
{{- fail "strom: auth.tokens is set but auth.enabled is false: set auth.enabled=true to require tokens, or remove auth.tokens" -}}
{{- end -}}
{{- if and $a.internalToken.value $a.internalToken.existingSecret -}}
{{- fail "strom: set either auth.internalToken.value or auth.internalToken.existingSecret, not both" -}}
{{- end -}}
{{- with $a.internalToken.value -}}
{{- $t := trim (toString .) -}}
{{- if regexMatch "\\s" $t -}}
{{- fail "strom: auth.internalToken.value must be one word without white space (strom token generate)" -}}
{{- end -}}
{{- if lt (len $t) 16 -}}
{{- fail "strom: auth.internalToken.value must be at least 16 bytes long (strom token generate)" -}}
{{- end -}}
{{- end -}}
{{- if lt (float64 $v.server.rateLimit) 0.0 -}}
{{- fail "strom: server.rateLimit must not be negative (0 disables the limit)" -}}
{{- end -}}
{{- if and (gt (float64 $v.server.rateLimit) 0.0) (lt (int $v.server.rateLimitBurst) 1) -}}
{{- fail "strom: server.rateLimitBurst must be at least 1 with server.rateLimit" -}}
{{- end -}}
{{- if lt (int64 $v.wal.minFreeBytes) 0 -}}
{{- fail "strom: wal.minFreeBytes must not be negative (0 disables the watermark)" -}}
{{- end -}}
{{- if $v.write.persistence.enabled -}}
{{- $size := include "strom.quantityBytes" $v.write.persistence.size -}}
{{- if and $size (ge (int64 $v.wal.minFreeBytes) (int64 $size)) -}}
{{- fail (printf "strom: wal.minFreeBytes (%d) must be below write.persistence.size (%s): Strom refuses a watermark no write could ever pass; enlarge the volume or lower the watermark" (int64 $v.wal.minFreeBytes) (toString $v.write.persistence.size)) -}}
{{- end -}}
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
{{- $server := dict
  "http_listen_address" (printf ":%d" (int $v.server.httpPort))
  "internal_listen_address" (printf ":%d" (int $v.server.internalPort))
  "graceful_shutdown_timeout" (printf "%ds" (int $v.server.gracefulShutdownTimeoutSeconds))
  "rate_limit" $v.server.rateLimit
  "rate_limit_burst" (int $v.server.rateLimitBurst)
-}}
{{- if include "strom.internalToken" . }}{{ $_ := set $server "internal_token_file" (printf "%s/internal-token" (include "strom.internalTokenDir" .)) }}{{ end -}}
{{- $cfg := dict
  "data_dir" "/var/lib/strom"
  "log" (dict "level" $v.log.level "format" $v.log.format)
  "server" $server
  "catalog" (dict "backend" "postgres" "postgres" (dict "url" "${STROM_POSTGRES_URL}"))
  "objstore" (dict "backend" "s3" "s3" $s3)
  "frontend" (dict "lease_ttl" $v.frontend.leaseTTL "flush_interval" $v.frontend.flushInterval "flush_bytes" (int64 $v.frontend.flushBytes))
  "wal" (dict "min_free_bytes" (int64 $v.wal.minFreeBytes))
  "lake" $lake
-}}
{{- if $v.auth.enabled }}{{ $_ := set $cfg "auth" (dict "tokens_file" (printf "%s/tokens.yaml" (include "strom.tokensDir" .)) "reload_interval" $v.auth.reloadInterval) }}{{ end -}}
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
    {{- if $v.auth.enabled }}
    - name: auth-tokens
      mountPath: {{ include "strom.tokensDir" $ }}
      readOnly: true
    {{- end }}
    {{- if include "strom.internalToken" $ }}
    - name: internal-token
      mountPath: {{ include "strom.internalTokenDir" $ }}
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
{{- /* No subPath: the kubelet swaps in a changed Secret, which Strom reloads. */}}
{{- if $v.auth.enabled }}
- name: auth-tokens
  secret:
    secretName: {{ $v.auth.tokens.existingSecret | default (include "strom.authSecretName" .) }}
    items:
      - key: {{ ternary $v.auth.tokens.existingSecretKey "tokens.yaml" (not (empty $v.auth.tokens.existingSecret)) }}
        path: tokens.yaml
{{- end }}
{{- if include "strom.internalToken" . }}
- name: internal-token
  secret:
    secretName: {{ $v.auth.internalToken.existingSecret | default (include "strom.authSecretName" .) }}
    items:
      - key: {{ ternary $v.auth.internalToken.existingSecretKey "internal-token" (not (empty $v.auth.internalToken.existingSecret)) }}
        path: internal-token
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
{{- /* Strom reads the internal secret at start only; the tokens file is reloaded without a restart. */}}
{{- with $.Values.auth.internalToken.value }}
checksum/internal-token: {{ trim (toString .) | sha256sum }}
{{- end }}
{{- with $role.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
