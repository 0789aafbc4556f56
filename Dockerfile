# pointsd's image: the binary make build makes (static, -trimpath,
# version-stamped), alone in a distroless image as a non-root user.
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#                --build-arg REVISION=$(git rev-parse HEAD) -t pointsd .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG REVISION=unknown
RUN make build VERSION=$VERSION REVISION=$REVISION

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/pointsd /usr/local/bin/pointsd
# Listen on every interface inside the container; DATABASE_URL is given
# at run time.
ENV POINTSD_ADDR=:4000
EXPOSE 4000
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/pointsd"]
CMD ["serve"]
