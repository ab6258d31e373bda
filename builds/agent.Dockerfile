# syntax=docker/dockerfile:1
# The Wisp agent: dials the controller(s) over QUIC (outbound only), serves its
# Prometheus metrics on tcp 9464 and the local invoke API on tcp 4080. Build
# from the repository root:
#
#   docker build -f builds/agent.Dockerfile --build-arg VERSION=0.1.0 -t wisp-agent:0.1.0 .
#
# Run it with WISP_CONTROLLERS=<host>:4433 and, on first start only,
# WISP_JOIN_TOKEN (or a YAML --config FILE with join_token: ...). /var/lib/wisp keeps
# its credential, code and outbox: keep it on a volume.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS TARGETARCH TARGETVARIANT
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOARM=${TARGETVARIANT#v} \
    go build -trimpath -ldflags "-s -w -X github.com/wispfn/wisp/internal/version.Version=${VERSION}" \
    -o /out/wisp-agent ./cmd/wisp-agent

FROM alpine:3.22
RUN apk add --no-cache ca-certificates tzdata \
    && addgroup -S -g 10001 wisp \
    && adduser -S -D -H -u 10001 -G wisp -h /var/lib/wisp wisp \
    && install -d -o wisp -g wisp -m 0700 /var/lib/wisp
COPY --from=build /out/wisp-agent /usr/local/bin/wisp-agent
# Inside a container loopback is private, so metrics and the local API listen
# on every interface; publish them only where you need them.
ENV WISP_DATA_DIR=/var/lib/wisp \
    WISP_METRICS_ADDR=0.0.0.0:9464 \
    WISP_LOCAL_API=0.0.0.0:4080
USER 10001:10001
WORKDIR /var/lib/wisp
VOLUME ["/var/lib/wisp"]
EXPOSE 9464/tcp 4080/tcp
# healthcheck GETs /readyz on --metrics-addr (else the local API): no curl
# or wget needed in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/wisp-agent", "healthcheck", "--wait", "2s"]
ENTRYPOINT ["/usr/local/bin/wisp-agent"]
CMD ["run"]
