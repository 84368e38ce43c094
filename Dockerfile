# The Strom image: one static binary, `strom`, running `strom server` by
# default (with embedded defaults: data under /var/lib/strom/data). The dev
# stack (localstack/compose.yaml) and the Helm chart pass the settings as
# arguments.
#
#   docker build -t strom-io/strom:dev .
#   docker run --rm -p 9123:9123 strom-io/strom:dev

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
# Every module of go.work must be here, or the workspace does not load.
COPY go.work go.work.sum ./
COPY api/go.mod api/go.sum api/
COPY catalog/go.mod catalog/go.sum catalog/
COPY e2e/go.mod e2e/go.sum e2e/
COPY services/go.mod services/go.sum services/
COPY testenv/go.mod testenv/go.sum testenv/
COPY tiering/go.mod tiering/go.sum tiering/
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags='-s -w' -o /out/strom ./services/cmd/strom

FROM debian:trixie-slim
# curl is for health checks (curl -fsS http://localhost:9123/readyz).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 strom \
 && useradd --system --uid 65532 --gid strom --home-dir /var/lib/strom --shell /usr/sbin/nologin strom \
 && install -d -o strom -g strom -m 0750 /var/lib/strom
COPY --from=build /out/strom /usr/local/bin/strom
# A volume mounted at /var/lib/strom starts with this directory's owner.
USER 65532:65532
WORKDIR /var/lib/strom
# 9123: API, /readyz, /metrics and the Iceberg REST catalog; 9124: internal API.
EXPOSE 9123 9124
ENTRYPOINT ["strom"]
CMD ["server"]
