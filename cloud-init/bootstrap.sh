#!/usr/bin/env bash
# labctl instance bootstrap: fetch labnet with the instance role, verify it, install
# it, run the role's services, and report the result to the lab's bucket, under
# reports/<writer>.json (see labctl-lib.sh).
# What it shares with lab-capture (the env file, IMDSv2, S3 signing) is in
# labctl-lib.sh, with its test hooks; LABCTL_LIB says where that is.
set -Eeuo pipefail
umask 022

UNIT_TEMPLATE=/etc/labctl/labnet.service.tmpl
BIN=/usr/local/bin/labnet
UNIT_DIR=/etc/systemd/system
LOG=/var/log/labctl-bootstrap.log
LIB=${LABCTL_LIB:-/usr/local/lib/labctl/lib.sh}

REPORTED=0 SSM="absent"
declare -A STATE=()

mkdir -p "$(dirname "$LOG")"
# shellcheck source=/dev/null  # labctl-lib.sh, linted on its own
. "$LIB" || {
  echo "labctl-bootstrap: cannot read $LIB" >&2
  exit 1
}

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
  if retry s3_put_own "reports/@WRITER@.json" "$file" application/json; then
    log "reported ok=$ok to s3://$BUCKET/reports/$WRITER.json"
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
