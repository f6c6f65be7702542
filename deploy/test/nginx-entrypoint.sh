#!/bin/sh
# The part of the official nginx image's entrypoint that compose.yaml uses, for the Debian-built
# stand-in (deploy/test/nginx.Dockerfile):
# - NGINX_ENTRYPOINT_LOCAL_RESOLVERS set: NGINX_LOCAL_RESOLVERS lists /etc/resolv.conf's
#   nameservers (IPv6 ones in brackets), space-separated;
# - every /etc/nginx/templates/NAME.template is written to $NGINX_ENVSUBST_OUTPUT_DIR/NAME
#   (default /etc/nginx/conf.d) with the environment's variables, and only those, substituted.
set -eu

if [ "${1:-}" = nginx ]; then
    if [ -n "${NGINX_ENTRYPOINT_LOCAL_RESOLVERS:-}" ]; then
        NGINX_LOCAL_RESOLVERS=$(awk '$1 == "nameserver" {
            printf "%s%s", sep, ($2 ~ ":" ? "[" $2 "]" : $2); sep = " " }' /etc/resolv.conf)
        export NGINX_LOCAL_RESOLVERS
    fi
    out="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
    defined=$(env | cut -d= -f1 | sed 's/^/${/; s/$/}/' | tr '\n' ' ')
    for template in /etc/nginx/templates/*.template; do
        [ -f "$template" ] || continue
        target="$out/$(basename "$template" .template)"
        envsubst "$defined" < "$template" > "$target"
        echo "$0: wrote $target from $template" >&2
    done
fi
exec "$@"
