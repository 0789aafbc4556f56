# pointsd's image: the binary make build-pointsd makes (static, -trimpath,
# version-stamped), alone in a distroless image as a non-root user.
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#                --build-arg REVISION=$(git rev-parse HEAD) -t pointsd .
# The base images are build arguments, so that a machine without registry
# access can build on local stand-ins (deploy/images/build-standins.sh).
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG REVISION=unknown
RUN make build-pointsd VERSION=$VERSION REVISION=$REVISION

FROM ${RUNTIME_IMAGE}
ARG VERSION=devel
ARG REVISION=unknown
LABEL org.opencontainers.image.title=pointsd \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$REVISION
COPY --from=build /src/bin/pointsd /usr/local/bin/pointsd
# Listen on every interface inside the container; DATABASE_URL is given
# at run time.
ENV POINTSD_ADDR=:4000
EXPOSE 4000
# distroless's nonroot user, by number: no name lookup is needed.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pointsd"]
CMD ["serve"]
