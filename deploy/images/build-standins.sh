#!/usr/bin/env bash
# Builds local stand-ins for the official images that compose.yaml and the
# Dockerfile name, from Debian's packages, for machines that cannot reach a
# container registry (this project's development and CI machines). With
# registry access none of this is needed: docker compose pulls
# golang:1.26-bookworm, distroless/static, postgres:15 and prom/prometheus.
#
#   deploy/images/build-standins.sh        build what is missing
#   deploy/images/build-standins.sh -f     rebuild them all
#
# Prints the variables that point compose.yaml (and the Dockerfile's build
# arguments) at them:
#   POINTSD_GO_IMAGE        golang:1.26-bookworm   -> this machine's Go on bookworm
#   POINTSD_RUNTIME_IMAGE   distroless/static      -> passwd (nonroot, 65532),
#                                                     CA bundle, zoneinfo, /tmp
#   POINTSD_POSTGRES_IMAGE  postgres:15            -> Debian's postgresql-15 with
#                                                     the official entry point's
#                                                     contract (postgres/)
#   POINTSD_PROMETHEUS_IMAGE prom/prometheus       -> Debian's prometheus
# Needs root (debootstrap) and podman (or docker), and Debian's mirror over
# HTTP; the Go image takes this machine's CA bundle ($SSL_CERT_FILE) for
# the module proxy.
set -euo pipefail
cd "$(dirname "$0")"

force=0
[[ ${1:-} == -f ]] && force=1
engine=$(command -v podman || command -v docker) || { echo "build-standins: neither podman nor docker is installed" >&2; exit 1; }
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
repo=localhost/pointsd-standin
gover=$(go env GOVERSION)
base=$repo/bookworm:minbase
runtime=$repo/static:nonroot
golang=$repo/golang:$gover-bookworm
postgres=$repo/postgres:15
prometheus=$repo/prometheus:bookworm
work=${STANDIN_WORK:-$(pwd)/../../.data/standin}

say() { echo "build-standins: $*" >&2; }
exists() { [[ $force == 0 ]] && "$engine" image exists "$1" 2>/dev/null; }
if ! "$engine" image exists --help >/dev/null 2>&1; then
	exists() { [[ $force == 0 ]] && "$engine" image inspect "$1" >/dev/null 2>&1; }
fi

mkdir -p "$work"
if ! exists "$base"; then
	say "$base: debootstrap --variant=minbase $suite"
	rm -rf "$work/rootfs"
	debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
		{ tail -20 "$work/debootstrap.log" >&2; exit 1; }
	# The point release's fixes too, as Debian's official images have.
	cat >"$work/rootfs/etc/apt/sources.list" <<S
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} $suite-security main
S
	tar --numeric-owner -C "$work/rootfs" -c . | "$engine" import -q - "$base" >/dev/null
	rm -rf "$work/rootfs"
fi

if ! exists "$runtime"; then
	say "$runtime: the files of distroless/static"
	r=$work/static
	rm -rf "$r"
	mkdir -p "$r"/{etc/ssl/certs,usr/share,tmp,home/nonroot}
	chmod 1777 "$r/tmp"
	cat >"$r/etc/passwd" <<'P'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
P
	cat >"$r/etc/group" <<'G'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
G
	chown 65532:65532 "$r/home/nonroot"
	cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$r/etc/ssl/certs/ca-certificates.crt"
	cp -r /usr/share/zoneinfo "$r/usr/share/zoneinfo"
	tar --numeric-owner -C "$r" -c . |
		"$engine" import -q --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' - "$runtime" >/dev/null
	rm -rf "$r"
fi

if ! exists "$golang"; then
	say "$golang: $(go version | cut -d' ' -f3) on $suite"
	ctx=$work/golang
	rm -rf "$ctx"
	mkdir -p "$ctx"
	cp golang/Containerfile "$ctx/"
	cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$ctx/ca-certificates.crt"
	cp -a "$(go env GOROOT)" "$ctx/go"
	"$engine" build -q --build-arg BASE_IMAGE="$base" -t "$golang" -f "$ctx/Containerfile" "$ctx" >/dev/null
	rm -rf "$ctx"
fi

if ! exists "$postgres"; then
	say "$postgres: Debian's postgresql-15"
	"$engine" build -q --build-arg BASE_IMAGE="$base" -t "$postgres" -f postgres/Containerfile postgres >/dev/null
fi

if ! exists "$prometheus"; then
	say "$prometheus: Debian's prometheus"
	"$engine" build -q --build-arg BASE_IMAGE="$base" -t "$prometheus" -f prometheus/Containerfile prometheus >/dev/null
fi

cat <<VARS
export POINTSD_GO_IMAGE=$golang
export POINTSD_RUNTIME_IMAGE=$runtime
export POINTSD_POSTGRES_IMAGE=$postgres
export POINTSD_PROMETHEUS_IMAGE=$prometheus
VARS
