# Test stand-in for the official postgres image, built by scripts/deploy-check.sh from Debian's
# postgresql (15 on bookworm): the same data path, POSTGRES_* variables, port and pg_isready
# that compose.yaml's `postgres` service relies on.
ARG DEBIAN_IMAGE=localhost/mnist-canvas-test/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && pg_dropcluster --stop 15 main \
    && ln -s /usr/lib/postgresql/15/bin/* /usr/local/bin/
ENV PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 5432
STOPSIGNAL SIGINT
CMD ["postgres"]
