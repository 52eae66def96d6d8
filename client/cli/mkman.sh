#!/bin/sh
# mkman.sh - a man page made from a program's own usage text, so the two never disagree:
# NAME from the arguments, SYNOPSIS and OPTIONS from PROG --help, and for mpb the COMMANDS
# section from `mpb help --man` (help.c's entries).
# usage: mkman.sh PROG NAME SECTION VERSION "SUMMARY" OUT
set -eu
prog=$1 name=$2 section=$3 version=$4 summary=$5 out=$6
# roff: a backslash is \e, a line starting with . or ' is kept as text, - is a minus
esc() { sed -e 's/\\/\\e/g' -e 's/^\([.'\'']\)/\\\&\1/' -e 's/-/\\-/g'; }
{
    printf '.TH %s %s "" "mpbroker %s" "mpbroker"\n' "$(echo "$name" | tr a-z A-Z)" \
        "$section" "$version"
    printf '.SH NAME\n%s \\- %s\n' "$name" "$summary"
    printf '.SH SYNOPSIS AND OPTIONS\n.nf\n'
    "$prog" --help | esc
    printf '.fi\n'
    if [ "$name" = mpb ]; then "$prog" help --man; fi
    printf '.SH SEE ALSO\n'
    case $name in
    mpb) echo '.BR mpbrokerd (8), " " mpb\-worker (1)' ;;
    mpbrokerd) echo '.BR mpb (1), " " mpb\-worker (1)' ;;
    *) echo '.BR mpb (1), " " mpbrokerd (8)' ;;
    esac
} >"$out.tmp"
mv "$out.tmp" "$out"
