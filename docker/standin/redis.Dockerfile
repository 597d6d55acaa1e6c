# Stand-in for redis:7.4-alpine where no registry is reachable (scripts/container-engine.sh
# builds it on the debian:bookworm-slim stand-in). Differences (docs/docker.md, "Tested
# here"): Debian 12's redis-server 7.0 on glibc instead of Redis 7.4 on Alpine; like the
# official image, a `redis-server` command without a config file gets
# `--protected-mode no` so the other containers of the project may connect.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
       /var/log/*.log \
    && mkdir -p /data && chown redis:redis /data
WORKDIR /data
# hadolint ignore=DL3066
USER redis
ENTRYPOINT ["sh", "-c", "if [ \"$1\" = redis-server ]; then shift; exec redis-server \"$@\" --protected-mode no; fi; exec \"$@\"", "--"]
CMD ["redis-server"]
