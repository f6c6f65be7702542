# Test stand-in for nginxinc/nginx-unprivileged, built by scripts/deploy-check.sh from Debian's
# nginx-light: the same uid (101), port (8080), stop signal, command and entrypoint behaviour
# that compose.yaml relies on, so compose.yaml mounts the same deploy/nginx.conf into it.
ARG DEBIAN_IMAGE=localhost/mnist-canvas-test/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       nginx-light gettext-base wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 101 nginx \
    && useradd --system --uid 101 --gid 101 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin nginx \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
COPY nginx-entrypoint.sh /docker-entrypoint.sh
ENTRYPOINT ["/docker-entrypoint.sh"]
EXPOSE 8080
STOPSIGNAL SIGQUIT
USER 101
CMD ["nginx", "-g", "daemon off;"]
