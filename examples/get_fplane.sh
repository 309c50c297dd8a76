#!/bin/sh
# get_fplane.sh: download the HET/VIRUS fplane file valid at DATE, with curl only.
# The same as the get_fplane console script (wsgi/client.py). POSIX sh (dash) or bash.
#
# The server hands out its own copy with its URL as the default:
#     curl -O https://fplane.example.org/get_fplane.sh && sh get_fplane.sh 20180715
#
#   get_fplane.sh [-o FILE] [-s] [-p] [-k KNOWN_AT] [-u URL] [DATE]
#
#   -o FILE      output file, - for standard output (default: fplane<DATE>.txt; without
#                DATE the name the server suggests, fplane<today's night>.txt)
#   -s           short file (full_fplane=0)      -p  measured positions (actual_pos=1)
#   -k KNOWN_AT  the answer as the server knew it then
#   -u URL       the server (default: $FPLANE_URL, else the server this copy came from)
#
# Requests <URL>/fplane/<DATE>?actual_pos=0|1&full_fplane=0|1[&known_at=...], writes
# a temporary file beside the target and renames it: a failed download leaves no file
# and never replaces a good one. On a refusal the server's code line (e.g. "302 no
# configuration known for ...") goes to standard error. Exit 0 written, 1 failed, 2 usage.
set -eu

# The server this copy was downloaded from: filled in when the service hands it out
# (GET /get_fplane.sh); empty in the repository's copy.
served_from=''

usage() {
    echo "usage: get_fplane.sh [-o FILE] [-s] [-p] [-k KNOWN_AT] [-u URL] [DATE]" >&2
    exit 2
}

# Percent-encode every byte but the unreserved characters, so DATE stays one path segment
# and the '+' of a time zone offset is not read as a space. Byte by byte through od, so
# that it needs no bash and any UTF-8 is encoded byte for byte.
urlencode() {
    printf '%s' "$1" | od -An -v -tx1 | tr -s ' ' '\n' | while read -r hex; do
        case $hex in
            '') ;;
            3[0-9]|4[1-9a-f]|5[0-9a]|6[1-9a-f]|7[0-9a]|2d|2e|5f|7e)   # 0-9 A-Z a-z - . _ ~
                printf "\\$(printf '%03o' "0x$hex")" ;;
            *) printf '%%%s' "$(printf '%s' "$hex" | tr 'a-f' 'A-F')" ;;
        esac
    done
}

output='' full=1 actual=0 known_at='' url=${FPLANE_URL:-$served_from}
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
[ -z "$known_at" ] || request="$request&known_at=$(urlencode "$known_at")"
[ -n "$output" ] || [ -z "$date" ] || output="fplane$(printf '%s' "$date" | tr / _).txt"

# The temporary file lives where the result goes, so that mv is an atomic rename.
if [ "$output" = - ]; then dir=${TMPDIR:-/tmp}; else dir=$(dirname -- "${output:-./x}"); fi
body=$(mktemp "$dir/.get_fplane.XXXXXX")
headers=$(mktemp) errors=$(mktemp)
trap 'rm -f -- "$body" "$headers" "$errors"' EXIT

status=0
curl --silent --show-error --fail-with-body --location --max-time 60 \
     --dump-header "$headers" --output "$body" -- "$request" 2>"$errors" || status=$?
# The last value of header $1 (names compare without case, as HTTP says).
header() {
    tr -d '\r' <"$headers" | awk -v name="$1" '
        tolower(substr($0, 1, length(name) + 1)) == tolower(name) ":" {
            value = substr($0, length(name) + 2); sub(/^[ \t]+/, "", value) }
        END { if (value != "") print value }'
}
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
