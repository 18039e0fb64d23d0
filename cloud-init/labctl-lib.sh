#!/usr/bin/env bash
# labctl instance library: what the bootstrap and lab-capture share. It reads the
# instance's values, gets the instance role's credentials through IMDSv2, and signs S3
# requests with them (curl --aws-sigv4). Sourced, never run; the sourcing script sets
# LOG (its log file) first.
# What an instance writes goes under its writer, `<role id>:<instance id>`: the name
# AWS gives the role's session on this instance (IAM's aws:userid). The role's policy
# lets it write nowhere else, so no instance can write another's evidence.
# Test hooks: LABCTL_ENV_FILE, LABCTL_S3_ENDPOINT, LABCTL_STS_ENDPOINT, LABCTL_RETRIES,
# LABCTL_BACKOFF and the standard AWS_EC2_METADATA_SERVICE_ENDPOINT.

ENV_FILE=${LABCTL_ENV_FILE:-/etc/labctl/instance.env}
IMDS=${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}
IMDS=${IMDS%/}
RETRIES=${LABCTL_RETRIES:-6}
BACKOFF=${LABCTL_BACKOFF:-2}

# Set here, read by the scripts that source this.
# shellcheck disable=SC2034
LAB="" INSTANCE="" ROLE="" REGION="" BUCKET="" SERVICES=""
# shellcheck disable=SC2034
LABNET_BUCKET="" LABNET_KEY="" LABNET_URL="" LABNET_SHA256=""
AK="" SK="" TOKEN="" INSTANCE_ID="" WRITER="" ERROR=""

# To the log, and to stderr unless LABCTL_LOG_QUIET is set (stderr is the log then).
log() {
  local line="${0##*/}: $*"
  printf '%s\n' "$line" >>"$LOG"
  [[ -n ${LABCTL_LOG_QUIET:-} ]] || printf '%s\n' "$line" >&2
}
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

# Parses the env file (never sources it) into the variables above.
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

# Sets WRITER from STS GetCallerIdentity's UserId, signed with the role's credentials.
# It must be this instance's: `<role id>:<instance id>` with our own instance id.
fetch_writer() {
  local url out
  url="${LABCTL_STS_ENDPOINT:-https://sts.$REGION.amazonaws.com}"
  out=$(printf 'user = "%s:%s"\nheader = "x-amz-security-token: %s"\n' "$AK" "$SK" "$TOKEN" |
    curl -sS -f --max-time 30 --aws-sigv4 "aws:amz:$REGION:sts" --config - \
      -H "Content-Type: application/x-www-form-urlencoded" \
      --data "Action=GetCallerIdentity&Version=2011-06-15" "${url%/}/" 2>>"$LOG") || return 1
  WRITER=$(sed -n 's:.*<UserId>\([^<]*\)</UserId>.*:\1:p' <<<"$out" | head -n 1)
  if [[ ! $WRITER =~ ^[A-Z0-9]{16,128}:i-([0-9a-f]{8}|[0-9a-f]{17})$ || ${WRITER#*:} != "$INSTANCE_ID" ]]; then
    log "these credentials are not this instance's role (STS UserId \`$WRITER')"
    WRITER=""
    return 1
  fi
}

# The one signing helper for every S3 call: s3 GET <key> <file>, or
# s3 PUT <key> <file> <content-type>. A PUT carries the file's SHA-256, which S3 checks
# and keeps (labctl pcap-fetch verifies downloads against it), and the instance it
# claims to come from, which labctl pcap-fetch checks against the key's writer.
# Credentials go to curl on stdin, never on its command line.
s3() {
  local method=$1 key=$2 file=$3 url sum
  url="${LABCTL_S3_ENDPOINT:-https://s3.$REGION.amazonaws.com}"
  # The key as S3 signs it: a writer's `:` percent-encoded (keys hold nothing else
  # outside A-Za-z0-9._-/), so the path curl signs is the one S3 computes.
  url="${url%/}/$BUCKET/${key//:/%3A}"
  local args=(-sS -f --max-time 600 --aws-sigv4 "aws:amz:$REGION:s3" --config -
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
  if [[ $method == PUT ]]; then
    sum=$(openssl dgst -sha256 -binary "$file" | base64 -w 0) || return 1
    args+=(-X PUT -H "Content-Type: $4" -H "x-amz-checksum-sha256: $sum"
      -H "x-amz-meta-labctl-instance-id: $INSTANCE_ID" --upload-file "$file")
  else
    args+=(-o "$file")
  fi
  printf 'user = "%s:%s"\nheader = "x-amz-security-token: %s"\n' "$AK" "$SK" "$TOKEN" |
    curl "${args[@]}" "$url" 2>>"$LOG"
}

# Fresh credentials for every call: the role's rotate.
s3_fetch() { fetch_credentials && s3 "$@"; }

# PUTs file $2 (type $3) as this instance's own: key $1 with @WRITER@ replaced. The
# writer is asked for each time, as a renamed role gives the instance a new one.
s3_put_own() {
  fetch_credentials && fetch_writer && s3 PUT "${1//@WRITER@/$WRITER}" "$2" "$3"
}
