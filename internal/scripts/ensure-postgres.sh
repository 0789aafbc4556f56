#!/bin/sh
# Makes sure the PostgreSQL server binaries (initdb, pg_ctl) that make run
# and make test start a throwaway server from are installed: with apt-get
# as root (or through sudo -n) it installs Debian's postgresql package and
# says so; elsewhere it prints the command to run. .ci/run uses it too.
# Exits 0 unless an install was attempted and failed: without the binaries
# make test skips the database tests (fails under POINTSD_REQUIRE_DB=1).
set -eu

have_server() {
	{ command -v pg_ctl && command -v initdb; } >/dev/null 2>&1 && return 0
	dir=$(pg_config --bindir 2>/dev/null) && [ -x "$dir/initdb" ] && return 0
	for dir in /usr/lib/postgresql/*/bin; do
		[ -x "$dir/initdb" ] && return 0
	done
	return 1
}

if ! have_server; then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "PostgreSQL server binaries not found: install PostgreSQL 15's server (initdb, pg_ctl) with your package manager, or set DATABASE_URL" >&2
		exit 0
	fi
	if [ "$(id -u)" = 0 ]; then
		sudo=""
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo="sudo -n"
	else
		echo "PostgreSQL server binaries not found: run  sudo apt-get install -y postgresql  (or set DATABASE_URL)" >&2
		exit 0
	fi
	echo "installing the PostgreSQL server binaries: apt-get install -y postgresql" >&2
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get install -y -qq postgresql >/dev/null 2>&1 ||
		{ $sudo apt-get update -qq && $sudo apt-get install -y -qq postgresql >/dev/null; }
fi

# As root the server runs as the postgres user, which the package creates;
# make sure it exists when the binaries came some other way.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
	useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
