#!/bin/sh
# The image's entry point: a service name runs that service; anything else runs as a
# command (onedoor-audit verify, onedoor-keys ..., onedoor-admin ...).
set -e
case "${1:-}" in
    intake|router|social_security|hr_registration|audit|deadlines)
        service="$1"; shift
        exec python3 -m "services.${service}" "$@" ;;
    department)
        shift
        exec python3 -m shared.department "$@" ;;
    ""|-h|--help)
        echo "usage: onedoor intake|router|social_security|hr_registration|audit|deadlines|department PKG"
        echo "       onedoor onedoor-audit verify | onedoor-keys ... | onedoor-admin ..."
        exit 0 ;;
    *)
        exec "$@" ;;
esac
