#!/usr/bin/env bash
# labctl instance bootstrap: fetch labnet with the instance role, verify it, install
# it, run the role's services, and report the result to the lab's bucket.
# Test hooks: LABCTL_S3_ENDPOINT, LABCTL_RETRIES, LABCTL_BACKOFF and the standard
# AWS_EC2_METADATA_SERVICE_ENDPOINT.
set -Eeuo pipefail
umask 022

ENV_FILE=/etc/labctl/instance.env
UNIT_TEMPLATE=/etc/labctl/labnet.service.tmpl
IMDS=${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}
IMDS=${IMDS%/}
RETRIES=${LABCTL_RETRIES:-6}
BACKOFF=${LABCTL_BACKOFF:-2}
BIN=/usr/local/bin/labnet
UNIT_DIR=/etc/systemd/system
LOG=/var/log/labctl-bootstrap.log

LAB="" INSTANCE="" ROLE="" REGION="" BUCKET="" SERVICES=""
LABNET_BUCKET="" LABNET_KEY="" LABNET_URL="" LABNET_SHA256=""
AK="" SK="" TOKEN="" INSTANCE_ID="" ERROR="" REPORTED=0 SSM="absent"
declare -A STATE=()

mkdir -p "$(dirname "$LOG")"
log() { printf 'labctl-bootstrap: %s\n' "$*" | tee -a "$LOG" >&2; }
fail() {
  ERROR=$*
  log "FAILED: $ERROR"
  exit 1
}

# Runs "$@" until it succeeds, at most $RETRIES times, backing off 1x, 2x, 4x ... $BACKOFF s.
retry() {
  local attempt=1 delay=$BACKOFF
  until "$@"; do
    if ((attempt >= RETRIES)); then
      return 1
    fi
    log "attempt $attempt of $RETRIES failed: $1; retrying in ${delay}s"
    sleep "$delay"
    attempt=$((attempt + 1))
    delay=$((delay * 2))
  done
}

read_env() {
  local line key value
  [[ -r $ENV_FILE ]] || fail "cannot read $ENV_FILE"
  while IFS= read -r line || [[ -n $line ]]; do
    [[ -z $line || $line == \#* || $line != *=* ]] && continue
    key=${line%%=*}
    value=${line#*=}
    value=${value#\"}
    value=${value%\"}
    case $key in
      LAB | INSTANCE | ROLE | REGION | BUCKET | SERVICES | LABNET_BUCKET | LABNET_KEY | LABNET_URL | LABNET_SHA256)
        printf -v "$key" '%s' "$value"
        ;;
    esac
  done <"$ENV_FILE"
  [[ -n $INSTANCE && -n $BUCKET ]] || fail "$ENV_FILE lacks INSTANCE or BUCKET"
}

imds_token() {
  curl -sS -f --max-time 5 -X PUT "$IMDS/latest/api/token" \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 21600" 2>>"$LOG"
}

imds_get() {
  curl -sS -f --max-time 5 -H "X-aws-ec2-metadata-token: $1" "$IMDS/latest/$2" 2>>"$LOG"
}

json_field() {
  sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" <<<"$2" | head -n 1
}

# Sets AK, SK, TOKEN from the instance role, and INSTANCE_ID (and REGION when the env
# file has none) from the metadata service.
fetch_credentials() {
  local token role creds
  token=$(imds_token) || return 1
  if [[ -z $REGION ]]; then
    REGION=$(imds_get "$token" meta-data/placement/region) || return 1
  fi
  if [[ -z $INSTANCE_ID ]]; then
    INSTANCE_ID=$(imds_get "$token" meta-data/instance-id) || return 1
  fi
  role=$(imds_get "$token" meta-data/iam/security-credentials/ | head -n 1) || return 1
  [[ -n $role ]] || return 1
  creds=$(imds_get "$token" "meta-data/iam/security-credentials/$role") || return 1
  AK=$(json_field AccessKeyId "$creds")
  SK=$(json_field SecretAccessKey "$creds")
  TOKEN=$(json_field Token "$creds")
  [[ -n $AK && -n $SK ]]
}

# The one signing helper for every S3 call: s3 GET|PUT <key> <file>.
# Credentials go to curl on stdin, never on its command line.
s3() {
  local method=$1 key=$2 file=$3 url
  url="${LABCTL_S3_ENDPOINT:-https://s3.$REGION.amazonaws.com}"
  url="${url%/}/$BUCKET/$key"
  local args=(-sS -f --max-time 120 --aws-sigv4 "aws:amz:$REGION:s3" --config -
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
  if [[ $method == PUT ]]; then
    args+=(-X PUT -H "Content-Type: application/json" --upload-file "$file")
  else
    args+=(-o "$file")
  fi
  printf 'user = "%s:%s"\nheader = "x-amz-security-token: %s"\n' "$AK" "$SK" "$TOKEN" |
    curl "${args[@]}" "$url" 2>>"$LOG"
}

s3_fetch() { fetch_credentials && s3 "$@"; }

download() {
  if [[ -n $LABNET_URL ]]; then
    curl -sS -f -L --max-time 120 -o "$1" "$LABNET_URL" 2>>"$LOG"
  else
    BUCKET=$LABNET_BUCKET s3_fetch GET "$LABNET_KEY" "$1"
  fi
}

install_labnet() {
  [[ -n $LABNET_SHA256 && (-n $LABNET_URL || -n $LABNET_KEY) ]] ||
    fail "the user-data names no labnet artifact"
  LABNET_BUCKET=${LABNET_BUCKET:-$BUCKET}
  mkdir -p "$(dirname "$BIN")"
  local tmp="$BIN.download" actual
  rm -f "$tmp"
  log "downloading labnet (${LABNET_URL:-s3://$LABNET_BUCKET/$LABNET_KEY})"
  retry download "$tmp" || fail "could not download labnet after $RETRIES attempts"
  actual=$(sha256sum "$tmp" | cut -d ' ' -f 1)
  if [[ $actual != "$LABNET_SHA256" ]]; then
    rm -f "$tmp"
    fail "labnet SHA-256 mismatch: expected $LABNET_SHA256, got $actual; not installed"
  fi
  chmod 0755 "$tmp"
  mv -f "$tmp" "$BIN"
  log "installed $BIN ($actual)"
}

start_ssm_agent() {
  if ! command -v snap >/dev/null; then
    log "no snap: not starting the SSM agent"
  elif ! snap list amazon-ssm-agent >/dev/null 2>&1; then
    log "the amazon-ssm-agent snap is not installed"
  elif snap start --enable amazon-ssm-agent >>"$LOG" 2>&1; then
    SSM="running"
  else
    SSM="failed"
    log "could not start the amazon-ssm-agent snap"
  fi
}

write_units() {
  local template svc
  [[ -z $SERVICES ]] && return 0
  template=$(<"$UNIT_TEMPLATE") || fail "cannot read $UNIT_TEMPLATE"
  mkdir -p "$UNIT_DIR"
  for svc in $SERVICES; do
    [[ $svc =~ ^[a-z0-9][a-z0-9-]*$ ]] || fail "bad service name: $svc"
    printf '%s\n' "${template//@SERVICE@/$svc}" >"$UNIT_DIR/labnet-$svc.service"
    STATE[$svc]="not-started"
  done
  log "wrote units for: $SERVICES"
}

start_services() {
  local svc units=()
  [[ -z $SERVICES ]] && return 0
  for svc in $SERVICES; do units+=("labnet-$svc.service"); done
  systemctl daemon-reload >>"$LOG" 2>&1 || fail "systemctl daemon-reload failed"
  systemctl enable --now "${units[@]}" >>"$LOG" 2>&1 || fail "systemctl enable --now failed"
  for svc in $SERVICES; do
    STATE[$svc]=$(systemctl is-active "labnet-$svc.service" 2>/dev/null || true)
    [[ ${STATE[$svc]} == failed ]] && fail "labnet-$svc.service failed to start"
  done
  return 0
}

json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  s=$(printf '%s' "$s" | tr -d '\000-\037')
  printf '"%s"' "$s"
}

report() {
  local ok=$1 version="" services="" svc file
  REPORTED=1
  if [[ -x $BIN ]]; then version=$("$BIN" --version 2>&1 | head -n 1 || true); fi
  for svc in "${!STATE[@]}"; do
    services+="${services:+,}$(json_str "$svc"):$(json_str "${STATE[$svc]}")"
  done
  file=$(mktemp)
  {
    printf '{"lab":%s,"instance":%s,"instance_id":%s,' "$(json_str "$LAB")" \
      "$(json_str "$INSTANCE")" "$(json_str "$INSTANCE_ID")"
    printf '"role":%s,"ok":%s,' "$(json_str "$ROLE")" "$ok"
    printf '"labnet_version":%s,"labnet_sha256":%s,' "$(json_str "$version")" "$(json_str "$LABNET_SHA256")"
    printf '"services":{%s},"ssm_agent":%s,' "$services" "$(json_str "$SSM")"
    printf '"finished_at":%s,"error":' "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
    if [[ $ok == true ]]; then printf 'null'; else json_str "$ERROR"; fi
    printf ',"log_tail":%s}\n' "$(json_str "$(tail -n 30 "$LOG")")"
  } >"$file"
  if retry s3_fetch PUT "reports/$INSTANCE.json" "$file"; then
    log "reported ok=$ok to s3://$BUCKET/reports/$INSTANCE.json"
  else
    log "could not write the readiness report"
  fi
  rm -f "$file"
}

on_exit() {
  local rc=$?
  if ((rc != 0 && REPORTED == 0)) && [[ -n $INSTANCE && -n $BUCKET ]]; then
    report false
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'ERROR=${ERROR:-"line $LINENO: a command failed"}' ERR

read_env
log "bootstrapping $INSTANCE (role $ROLE, lab $LAB)"
start_ssm_agent
install_labnet
write_units
start_services
report true
