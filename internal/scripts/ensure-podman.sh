#!/usr/bin/env bash
# Makes a container engine available for make stack-test and the dockertest
# test: a Docker engine when one answers, else Debian's podman serving the
# Docker API on a socket of its own. Prints the DOCKER_HOST to use, and
# POINTSD_PODMAN_PID when it started the service.
#
#   eval "$(internal/scripts/ensure-podman.sh)"
#
# As root it installs podman, runc and debootstrap when missing and writes
# the two podman settings this kind of machine needs to
# /etc/containers/containers.conf:
#   [containers] default_ulimits = []   setrlimit is refused here, so the
#                                        default nofile/nproc limits fail
#                                        with "OCI permission denied";
#   [engine] runtime = "runc"           crun refuses hybrid cgroups.
set -euo pipefail

say() { echo "$@" >&2; }

# A Docker engine (or a DOCKER_HOST) that answers wins.
if [[ -n ${DOCKER_HOST:-} ]] && docker-compose version >/dev/null 2>&1 &&
	curl -sf --max-time 5 --unix-socket "${DOCKER_HOST#unix://}" http://d/_ping >/dev/null 2>&1; then
	echo "export DOCKER_HOST=$DOCKER_HOST"
	exit 0
fi
if [[ -S /var/run/docker.sock ]] && curl -sf --max-time 5 --unix-socket /var/run/docker.sock http://d/_ping >/dev/null 2>&1; then
	echo "export DOCKER_HOST=unix:///var/run/docker.sock"
	exit 0
fi

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null ||
	! command -v docker-compose >/dev/null || ! command -v curl >/dev/null; then
	if [[ $(id -u) != 0 ]]; then
		say "podman, runc, debootstrap and docker-compose are needed; install them (apt-get install podman runc debootstrap docker-compose)"
		exit 1
	fi
	say "installing podman, runc, debootstrap and docker-compose"
	export DEBIAN_FRONTEND=noninteractive
	pkgs=(podman runc debootstrap docker-compose netavark aardvark-dns fuse-overlayfs uidmap catatonit curl)
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 ||
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; }
fi

conf=/etc/containers/containers.conf
if [[ $(id -u) == 0 ]] && ! grep -qs '^# pointsd: settings for this machine' "$conf"; then
	say "writing podman's settings to $conf"
	mkdir -p /etc/containers
	[[ -f $conf ]] && cp "$conf" "$conf.before-pointsd"
	cat >"$conf" <<'CONF'
# pointsd: settings for this machine (internal/scripts/ensure-podman.sh).
[containers]
# setrlimit is refused here: the default nofile/nproc limits would fail
# every container with "OCI permission denied".
default_ulimits = []

[engine]
# crun refuses this machine's hybrid cgroups.
runtime = "runc"

[network]
network_backend = "netavark"
CONF
fi

# podman's Docker API, on a socket of its own, until the machine stops.
run=${POINTSD_PODMAN_DIR:-/run/pointsd-podman}
sock=$run/podman.sock
if ! curl -sf --max-time 5 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
	mkdir -p "$run"
	say "starting podman's Docker API on $sock"
	nohup podman system service --time=0 "unix://$sock" >"$run/service.log" 2>&1 </dev/null &
	pid=$!
	for _ in $(seq 100); do
		curl -sf --max-time 2 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -sf --max-time 5 --unix-socket "$sock" http://d/_ping >/dev/null ||
		{ say "podman's Docker API did not answer on $sock within 10 s:"; tail -5 "$run/service.log" >&2; exit 1; }
	# Whoever started it may stop it: kill "$POINTSD_PODMAN_PID".
	echo "export POINTSD_PODMAN_PID=$pid"
fi
echo "export DOCKER_HOST=unix://$sock"
