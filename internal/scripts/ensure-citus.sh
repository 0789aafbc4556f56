#!/usr/bin/env bash
# Installs the citus extension into the local PostgreSQL when it is
# missing, with the workplace's build script beside the checkout
# (../shared/citus/build-citus.sh: Citus 13.2.2 from source, 2-4 minutes,
# as root). Exits 0 when Citus is there afterwards, 1 when it cannot be had
# (the Citus tests and the chaos scenario then say so).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ -f $(pg_config --pkglibdir 2>/dev/null)/citus.so ]] || compgen -G '/usr/lib/postgresql/*/lib/citus.so' >/dev/null; then
	exit 0
fi
script=../shared/citus/build-citus.sh
if [[ ! -f $script ]]; then
	echo "Citus is not installed and $script is missing" >&2
	exit 1
fi
echo "installing Citus ($script)" >&2
bash "$script" >&2
