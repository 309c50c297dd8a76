#!/usr/bin/env bash
# get_fplane.sh: download the HET/VIRUS fplane file valid at DATE, with curl only.
# The same as the get_fplane console script (wsgi/client.py).
#
#   get_fplane.sh [-o FILE] [-s] [-p] [-k KNOWN_AT] [-u URL] [DATE]
#
#   -o FILE      output file, - for standard output (default: fplane<DATE>.txt; without
#                DATE the name the server suggests, fplane<today's night>.txt)
#   -s           short file (full_fplane=0)      -p  measured positions (actual_pos=1)
#   -k KNOWN_AT  the answer as the server knew it then
#   -u URL       the server (default: $FPLANE_URL)
#
# Requests <URL>/fplane/<DATE>?actual_pos=0|1&full_fplane=0|1[&known_at=...], writes
# a temporary file beside the target and renames it: a failed download leaves no file
# and never replaces a good one. On a refusal the server's code line (e.g. "302 no
# configuration known for ...") goes to standard error. Exit 0 written, 1 failed, 2 usage.
set -euo pipefail

usage() {
    echo "usage: get_fplane.sh [-o FILE] [-s] [-p] [-k KNOWN_AT] [-u URL] [DATE]" >&2
    exit 2
}

# Percent-encode everything but unreserved characters, so DATE stays one path segment
# and the '+' of a time zone offset is not read as a space.
urlencode() {
    local LC_ALL=C s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [A-Za-z0-9._~-]) out+=$c ;;
            *) printf -v c '%%%02X' "'$c"; out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

output='' full=1 actual=0 known_at='' url=${FPLANE_URL:-}
while getopts 'o:spk:u:h' opt; do
    case $opt in
        o) output=$OPTARG ;;
        s) full=0 ;;
        p) actual=1 ;;
        k) known_at=$OPTARG ;;
        u) url=$OPTARG ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
date=${1:-}
[ -n "$url" ] || { echo "get_fplane.sh: no server URL: give -u URL or set FPLANE_URL" >&2; exit 2; }

request="${url%/}/fplane/$(urlencode "$date")?actual_pos=$actual&full_fplane=$full"
[ -z "$known_at" ] || request+="&known_at=$(urlencode "$known_at")"
[ -n "$output" ] || [ -z "$date" ] || output="fplane${date//\//_}.txt"

# The temporary file lives where the result goes, so that mv is an atomic rename.
if [ "$output" = - ]; then dir=${TMPDIR:-/tmp}; else dir=$(dirname -- "${output:-./x}"); fi
body=$(mktemp "$dir/.get_fplane.XXXXXX")
headers=$(mktemp) errors=$(mktemp)
trap 'rm -f -- "$body" "$headers" "$errors"' EXIT

status=0
curl --silent --show-error --fail-with-body --location --max-time 60 \
     --dump-header "$headers" --output "$body" -- "$request" 2>"$errors" || status=$?
header() { tr -d '\r' <"$headers" | sed -n "s/^$1: *//Ip" | tail -n 1; }
if [ "$status" -eq 22 ] && [ -n "$(header X-FPlane-Code)" ]; then
    head -n 1 -- "$body" >&2        # the server's code line
    exit 1
elif [ "$status" -ne 0 ]; then
    echo "get_fplane.sh: cannot get $request: $(head -n 1 -- "$errors")" >&2
    exit 1
elif [ -z "$(header X-FPlane-Code)" ]; then
    echo "get_fplane.sh: $request did not answer like an fplane server; nothing written" >&2
    exit 1
fi

if [ "$output" = - ]; then
    cat -- "$body"
    where='standard output'
else
    if [ -z "$output" ]; then   # no DATE: the name the server suggests, if it is a plain one
        output=$(header Content-Disposition | sed -n 's/.*filename="\(fplane[A-Za-z0-9_.:+-]*\.txt\)".*/\1/p')
        output=${output:-fplane.txt}
    fi
    chmod "$(printf '%o' $((0666 & ~$(umask))))" -- "$body"  # mktemp made it 0600
    sync -- "$body"
    mv -f -- "$body" "$output"
    where=$output
fi
echo "wrote $where (version $(header X-FPlane-Version), valid_from $(header X-FPlane-Valid-From)," \
     "valid_until $(header X-FPlane-Valid-Until))" >&2
