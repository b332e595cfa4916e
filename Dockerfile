# replds in a container: one static binary (no cgo), run as a non-root user
# on a base image with nothing else in it (no shell).
#
#   docker build -t replds .
#   docker run -v replds:/var/lib/replds -p 12100:12100 replds     # one server, plain mode
#   docker compose up -d                                            # three (compose.yaml)
#
# The server takes its settings from REPLDS_* variables (README, "Settings
# from the environment"), e.g. -e REPLDS_PEER=db2:12100,db3:12100; the
# image sets the listen address and the data directory, a volume owned by
# the image's user (uid 65532).
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/replds ./cmd/replds \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/replds /usr/local/bin/replds
COPY --from=build --chown=65532:65532 /out/data /var/lib/replds
USER 65532:65532
ENV REPLDS_ADDR=0.0.0.0:12100 \
    REPLDS_DATA_DIR=/var/lib/replds
VOLUME /var/lib/replds
# gRPC, membership (TCP and UDP: the port after gRPC), metrics with
# REPLDS_HTTP_ADDR=0.0.0.0:12180.
EXPOSE 12100/tcp 12101/tcp 12101/udp 12180/tcp
ENTRYPOINT ["/usr/local/bin/replds"]
CMD ["server"]
