#!/bin/sh
# Writes /tmp/nginx/nginx.conf from the template and the environment, then runs nginx.
#   CONVSCOPE_PROXY_UPSTREAM  host:port of the API (default api:8000)
#   CONVSCOPE_PROXY_PORT      the port nginx listens on (default 8080)
# An upstream given by name is looked up again every 10 s through the container's DNS server
# (so a re-created api container is found at its new address); an IP address is used as is,
# with a keep-alive connection pool.
set -eu
upstream=${CONVSCOPE_PROXY_UPSTREAM:-api:8000}
port=${CONVSCOPE_PROXY_PORT:-8080}
conf=/tmp/nginx
mkdir -p "$conf"
host=${upstream%:*}
if expr "$host" : '[0-9.]*$' >/dev/null || expr "$host" : '\[.*\]$' >/dev/null; then
    printf 'upstream convscope_api {\n    server %s;\n    keepalive 16;\n}\n' "$upstream" \
        >"$conf/upstream.conf"
    target=http://convscope_api
else
    resolver=$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf)
    printf 'resolver %s valid=10s ipv6=off;\n' "${resolver:-127.0.0.11}" >"$conf/upstream.conf"
    target=http://$upstream
fi
sed -e "s|@PORT@|$port|g" -e "s|@TARGET@|$target|g" -e "s|@CONF@|$conf|g" \
    /etc/nginx/convscope.conf.template >"$conf/nginx.conf"
exec nginx -e stderr -c "$conf/nginx.conf" -g 'daemon off;'
