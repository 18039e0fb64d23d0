#!/usr/bin/env bash
# lab-capture: record this instance's traffic with tcpdump and put every finished file in
# the lab's bucket, under captures/<writer>/, with the instance role (the writer is
# `<role id>:<instance id>`, the only folder the role lets this instance write; see
# labctl-lib.sh). `labctl capture` starts it over SSM and `labctl pcap-fetch` brings
# the files home, named after the instance.
#
# Usage:
#   sudo lab-capture record [options] [FILTER...]   record, rotate, upload
#     --seconds N         stop after N seconds (default 60; at most 86400)
#     --count N           stop after N packets (whichever comes first)
#     --interface IF      interface (default: the default route's; `any` for all)
#     --rotate-seconds N  start a new file every N seconds
#     --rotate-mb N       start a new file every N MB (default 1000: S3 takes at most
#                         5 GB in one upload; not with --rotate-seconds)
#     --label NAME        file names start with NAME (default `capture`)
#     --detach            check the options, start in the background, print where the
#                         files go, and return
#   lab-capture upload FILE...                      upload captures made by hand
#
# FILTER is a tcpdump filter expression (`tcp port 5000`). A recording's files go to
# captures/<writer>/<label>-<time>/ in the bucket, and stay in
# /var/lib/labctl/captures/<label>-<time>/ here; a file uploaded by hand goes to
# captures/<writer>/ (or its recording's folder, if it is in one). The log is
# /var/log/lab-capture.log. Test hooks: LABCTL_CAPTURE_DIR, LABCTL_CAPTURE_LOG,
# LABCTL_LIB and those of labctl-lib.sh.
set -Eeuo pipefail
umask 022

CAPTURE_DIR=${LABCTL_CAPTURE_DIR:-/var/lib/labctl/captures}
LIB=${LABCTL_LIB:-/usr/local/lib/labctl/lib.sh}
PCAP_TYPE=application/vnd.tcpdump.pcap
if [[ -n ${LABCTL_CAPTURE_LOG:-} ]]; then
  LOG=$LABCTL_CAPTURE_LOG
elif [[ -w /var/log ]]; then
  LOG=/var/log/lab-capture.log
else
  LOG=/dev/null
fi

# shellcheck source=/dev/null  # labctl-lib.sh, linted on its own
. "$LIB" || {
  echo "lab-capture: cannot read $LIB" >&2
  exit 1
}
on_error() { log "line $1: \`$2' failed (status $3)"; }
trap 'on_error "$LINENO" "$BASH_COMMAND" "$?"' ERR
# Names of the files uploaded so far, in this run.
declare -A UPLOADED=()

usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

die() {
  echo "lab-capture: $*" >&2
  exit 2
}

count_arg() {
  [[ $2 =~ ^[1-9][0-9]{0,8}$ ]] || die "$1 takes a whole number greater than 0, not \`$2'"
}

# The S3 key of a capture file below the writer's folder (@WRITER@ until s3_put_own
# knows it): in its recording's folder when it is in one. tcpdump's
# size rotation appends a number after `.pcap` (x.pcap1); the key keeps `.pcap` last
# so Wireshark recognises every file.
key_of() {
  local name=${1##*/} parent top session=""
  parent=$(cd "$(dirname "$1")" && pwd -P)
  top=$(cd "$CAPTURE_DIR" 2>/dev/null && pwd -P) || top=""
  if [[ -n $top && ${parent%/*} == "$top" ]]; then
    session="${parent##*/}/"
  fi
  if [[ $name =~ ^(.*)\.pcap([0-9]+)$ ]]; then
    name="${BASH_REMATCH[1]}-${BASH_REMATCH[2]}.pcap"
  fi
  name=${name//[^A-Za-z0-9._-]/_}
  printf 'captures/@WRITER@/%s%s' "$session" "$name"
}

is_capture() {
  local magic
  magic=$(od -An -tx1 -N4 "$1" 2>/dev/null | tr -d ' \n')
  case $magic in
    d4c3b2a1 | a1b2c3d4 | 4d3cb2a1 | a1b23c4d | 0a0d0d0a) return 0 ;;
    *) return 1 ;;
  esac
}

whoami_here() { fetch_credentials && fetch_writer; }

put() {
  local key
  key=$(key_of "$1")
  if retry s3_put_own "$key" "$1" "$PCAP_TYPE"; then
    log "uploaded $1 to s3://$BUCKET/${key//@WRITER@/$WRITER}"
  else
    log "could not upload $1 to s3://$BUCKET/$key (see $LOG)"
    return 1
  fi
}

# Uploads the files of recording directory $1 not uploaded yet. While tcpdump runs ($2
# is `running`) the last file in tcpdump's own order (the time in its name, or the
# number after `.pcap`) is still being written and waits for the next round; mtimes
# can tie, names cannot.
upload_finished() {
  local dir=$1 state=$2 files=() f failed=0
  mapfile -t files < <(find "$dir" -maxdepth 1 -type f -name '*.pcap*' | sort -V)
  if [[ $state == running && ${#files[@]} -gt 0 ]]; then
    unset 'files[-1]'
  fi
  for f in "${files[@]}"; do
    [[ -n ${UPLOADED[$f]:-} ]] && continue
    if put "$f"; then
      UPLOADED[$f]=1
    else
      failed=1
    fi
  done
  return "$failed"
}

default_interface() {
  local dev
  dev=$(ip -o route show default 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -n 1)
  printf '%s' "${dev:-any}"
}

record() {
  local seconds=60 count="" iface="" rotate_seconds="" rotate_mb="" label=capture detach=false
  local filter=()
  while (($#)); do
    case $1 in
      --seconds | --count | --interface | --rotate-seconds | --rotate-mb | --label)
        (($# >= 2)) || die "$1 needs a value"
        case $1 in
          --seconds) count_arg "$1" "$2" && seconds=$2 ;;
          --count) count_arg "$1" "$2" && count=$2 ;;
          --interface) iface=$2 ;;
          --rotate-seconds) count_arg "$1" "$2" && rotate_seconds=$2 ;;
          --rotate-mb) count_arg "$1" "$2" && rotate_mb=$2 ;;
          --label) label=$2 ;;
        esac
        shift 2
        ;;
      --detach) detach=true && shift ;;
      --) shift && filter+=("$@") && break ;;
      -*) die "unknown option $1 (try --help)" ;;
      *) filter+=("$1") && shift ;;
    esac
  done
  ((seconds <= 86400)) || die "--seconds is at most 86400 (a day)"
  [[ -z $rotate_seconds || -z $rotate_mb ]] || die "--rotate-seconds and --rotate-mb exclude each other"
  [[ -n $rotate_seconds ]] || rotate_mb=${rotate_mb:-1000}
  [[ $label =~ ^[a-z0-9][a-z0-9-]{0,39}$ ]] ||
    die "--label takes lowercase letters, digits and dashes (at most 40), not \`$label'"
  (($(id -u) == 0)) || die "recording needs root: run \`sudo lab-capture record ...'"
  command -v tcpdump >/dev/null || die "tcpdump is not installed"
  iface=${iface:-$(default_interface)}
  if [[ $iface != any ]] && ! ip link show dev "$iface" >/dev/null 2>&1; then
    die "no interface \`$iface' here (see \`ip -br link')"
  fi
  # A bad filter is an error now, not in a background job's log.
  local why
  if ! why=$(tcpdump -i "$iface" -d -- "${filter[@]}" 2>&1 >/dev/null); then
    die "tcpdump refuses the filter \`${filter[*]}': ${why##*: }"
  fi
  read_env

  # A detached run keeps the time its parent announced.
  local stamp dir pattern
  stamp=${LABCTL_CAPTURE_STAMP:-$(date -u +%Y%m%dT%H%M%SZ)}
  dir=$CAPTURE_DIR/$label-$stamp
  if [[ -n $rotate_seconds ]]; then
    pattern="$dir/$label-%Y%m%dT%H%M%SZ.pcap"
  else
    pattern="$dir/$label-$stamp.pcap"
  fi
  local what="for ${seconds}s${count:+ or $count packets}${filter[*]:+ (filter: ${filter[*]})}"
  # The directory is the recording's name, here and in the bucket: taken once.
  if [[ -z ${LABCTL_CAPTURE_STAMP:-} ]]; then
    mkdir -p "$CAPTURE_DIR"
    mkdir "$dir" 2>/dev/null ||
      die "a recording labelled \`$label' started this second already ($dir); use another --label"
  fi
  if $detach; then
    local args=(--seconds "$seconds" --interface "$iface" --label "$label")
    [[ -n $count ]] && args+=(--count "$count")
    [[ -n $rotate_seconds ]] && args+=(--rotate-seconds "$rotate_seconds")
    [[ -n $rotate_mb ]] && args+=(--rotate-mb "$rotate_mb")
    local self
    self=$(realpath "${BASH_SOURCE[0]}")
    if [[ -d /run/systemd/system ]] && command -v systemd-run >/dev/null; then
      # A unit of its own: it outlives the SSM command that started it, and a restart
      # of the SSM agent (a snap refresh) does not take it along.
      systemd-run --quiet --collect --unit "lab-capture-$label-${stamp,,}" \
        -p StandardOutput=null -p "StandardError=append:$LOG" \
        --setenv=LABCTL_CAPTURE_STAMP="$stamp" --setenv=LABCTL_LOG_QUIET=1 \
        "$self" record "${args[@]}" -- "${filter[@]}"
    else
      # No systemd (a container): a session of its own.
      LABCTL_CAPTURE_STAMP=$stamp LABCTL_LOG_QUIET=1 setsid -f "$self" record "${args[@]}" \
        -- "${filter[@]}" </dev/null >/dev/null 2>>"$LOG"
    fi
    echo "recording on $iface $what"
    if retry whoami_here; then
      echo "files go to s3://$BUCKET/captures/$WRITER/$label-$stamp/"
    else
      echo "files go to s3://$BUCKET/captures/<this instance>/$label-$stamp/ (STS did not say who this instance is yet; see $LOG)"
    fi
    return 0
  fi
  # tcpdump drops to its own user after opening the interface; it writes only here.
  local owner=root
  if id tcpdump >/dev/null 2>&1; then
    owner=tcpdump
    chown tcpdump "$dir"
  fi
  local cmd=(tcpdump -i "$iface" -n -U -w "$pattern" -Z "$owner")
  [[ -n $count ]] && cmd+=(-c "$count")
  [[ -n $rotate_seconds ]] && cmd+=(-G "$rotate_seconds")
  [[ -n $rotate_mb ]] && cmd+=(-C "$rotate_mb")
  log "recording on $iface $what into $dir"
  # SIGTERM, not SIGINT: a background job of a script ignores SIGINT. tcpdump flushes
  # and closes its file on either.
  TZ=UTC timeout --kill-after=10 "$seconds" "${cmd[@]}" -- "${filter[@]}" 2>>"$LOG" &
  local pid=$! rc=0
  trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM HUP
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    upload_finished "$dir" running || true
  done
  wait "$pid" || rc=$?
  trap - INT TERM HUP
  # 124: the time was up, which is how a capture by duration ends; 143: stopped.
  local ended=false
  ((rc == 0 || rc == 124 || rc == 143)) && ended=true
  if ! $ended; then
    log "tcpdump failed (status $rc); see $LOG"
  fi
  upload_finished "$dir" finished ||
    fail "some files of $dir were not uploaded; \`sudo lab-capture upload $dir/*.pcap*' tries again"
  log "done: ${#UPLOADED[@]} file(s) in s3://$BUCKET/captures/${WRITER:-@WRITER@}/${dir##*/}/"
  if ! $ended; then
    return 1
  fi
}

upload() {
  (($#)) || die "upload needs at least one file"
  local f key
  for f; do
    [[ -f $f && -r $f ]] || die "cannot read $f"
    is_capture "$f" || die "$f is not a pcap or pcapng file"
  done
  read_env
  for f; do
    put "$f" || fail "could not upload $f"
    key=$(key_of "$f")
    echo "s3://$BUCKET/${key//@WRITER@/$WRITER}"
  done
}

case ${1:-} in
  record | upload)
    sub=$1
    shift
    "$sub" "$@" || exit
    ;;
  -h | --help | help) usage ;;
  "") usage >&2 && exit 2 ;;
  *) die "unknown command $1 (try --help)" ;;
esac
