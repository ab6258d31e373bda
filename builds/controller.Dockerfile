# syntax=docker/dockerfile:1
# The Wisp controller: REST API on tcp 4000, QUIC for agents on udp 4433,
# /metrics, /healthz and /readyz on tcp 9465. Build from the repository root:
#
#   docker build -f builds/controller.Dockerfile --build-arg VERSION=0.1.0 -t wisp-controller:0.1.0 .
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 ...
# (the builder runs natively and cross-compiles; the binary is static).
# Without WISP_DATABASE_URL the store is the embedded one in /var/lib/wisp,
# which also holds admin.token and the controller's QUIC key and certificate.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS TARGETARCH TARGETVARIANT
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOARM=${TARGETVARIANT#v} \
    go build -trimpath -ldflags "-s -w -X github.com/wispfn/wisp/internal/version.Version=${VERSION}" \
    -o /out/wisp-controller ./cmd/wisp-controller

FROM alpine:3.22
# ca-certificates: CouchDB sinks and functions' outbound HTTP over TLS.
RUN apk add --no-cache ca-certificates tzdata \
    && addgroup -S -g 10001 wisp \
    && adduser -S -D -H -u 10001 -G wisp -h /var/lib/wisp wisp \
    && install -d -o wisp -g wisp -m 0700 /var/lib/wisp
COPY --from=build /out/wisp-controller /usr/local/bin/wisp-controller
ENV WISP_DATA_DIR=/var/lib/wisp \
    WISP_LISTEN=:4000 \
    WISP_QUIC_LISTEN=:4433 \
    WISP_METRICS_ADDR=:9465 \
    WISP_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/wisp
VOLUME ["/var/lib/wisp"]
EXPOSE 4000/tcp 4433/udp 9465/tcp
# healthcheck GETs /readyz on --metrics-addr (else the REST port): no
# curl or wget needed in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/wisp-controller", "healthcheck", "--wait", "2s"]
ENTRYPOINT ["/usr/local/bin/wisp-controller"]
