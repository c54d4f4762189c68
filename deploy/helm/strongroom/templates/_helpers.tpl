{{- define "strongroom.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "strongroom.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "strongroom.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "strongroom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "strongroom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strongroom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "strongroom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "strongroom.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "strongroom.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "strongroom.kekSecret" -}}
{{- default (printf "%s-kek" (include "strongroom.fullname" .)) .Values.secrets.keyEncryptionKey.existingSecret -}}
{{- end -}}

{{- define "strongroom.databaseSecret" -}}
{{- default (printf "%s-database" (include "strongroom.fullname" .)) .Values.secrets.database.existingSecret -}}
{{- end -}}

{{- define "strongroom.tlsSecret" -}}
{{- default (printf "%s-tls" (include "strongroom.fullname" .)) .Values.secrets.tls.existingSecret -}}
{{- end -}}

{{/* The environment shared by the server and the migration Job. */}}
{{- define "strongroom.env" -}}
- name: STRONGROOM_CONFIG
  value: /etc/strongroom/strongroom.toml
- name: STRONGROOM_ISSUER
  value: {{ required "issuer is required (https://op.bank.example)" .Values.issuer | quote }}
- name: STRONGROOM_DATA_DIR
  value: /var/lib/strongroom
- name: STRONGROOM_LOG
  value: {{ .Values.log | quote }}
- name: STRONGROOM_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "strongroom.databaseSecret" . }}
      key: url
- name: STRONGROOM_KEY_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "strongroom.kekSecret" . }}
      key: kek
{{- end -}}

{{- define "strongroom.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
