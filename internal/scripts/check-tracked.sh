#!/usr/bin/env bash
# Fails when git tracks a file over 1 MB or an executable that is not a
# script (one that does not start with #!): built binaries belong in
# bin/, not in the history. make test runs it; so does CI through make
# test. Checks the index of the repository it runs in (or of $1).
set -euo pipefail
cd "${1:-.}"

limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' entry; do
	meta=${entry%%$'\t'*}
	path=${entry#*$'\t'}
	read -r mode sha _ <<<"$meta"
	# Symbolic links and submodules hold no content of their own here.
	[[ $mode == 100644 || $mode == 100755 ]] || continue
	size=$(git cat-file -s "$sha")
	if ((size > limit)); then
		echo "tracked file over 1 MB: $path ($size bytes)" >&2
		bad=1
	fi
	if [[ $mode == 100755 ]] && [[ $(git cat-file blob "$sha" | head -c 2) != '#!' ]]; then
		echo "tracked executable that is not a script: $path" >&2
		bad=1
	fi
done < <(git ls-files -s -z)
exit "$bad"
