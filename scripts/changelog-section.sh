#!/usr/bin/env bash
# changelog-section.sh VERSION: prints the body of CHANGELOG.md's section for VERSION (the lines
# after "## [VERSION] - YYYY-MM-DD" up to the next "## [" heading), for the release notes.
# VERSION "Unreleased" prints the "## [Unreleased]" section. A released version's heading must
# carry its date; a missing or empty section is an error (the release workflow stops on it).
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 VERSION" >&2; exit 2; }
version=$1
file=${CHANGELOG:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/CHANGELOG.md}
[[ -f $file ]] || { echo "$file is missing" >&2; exit 1; }
if [[ $version == Unreleased ]]; then
  heading_re='^## \[Unreleased\][[:space:]]*$'
else
  heading_re="^## \\[${version//./\\.}\\] - [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][[:space:]]*$"
fi
# Through the environment: awk -v would eat the regex's backslashes.
body=$(HEADING_RE=$heading_re awk '
  found && /^## \[/ { exit }
  found { print }
  $0 ~ ENVIRON["HEADING_RE"] { found = 1 }
' "$file")
if [[ -z ${body//[[:space:]]/} ]]; then
  if [[ $version == Unreleased ]]; then
    echo "$file has no (or an empty) \"## [Unreleased]\" section" >&2
  else
    echo "$file has no (or an empty) \"## [$version] - YYYY-MM-DD\" section: date the release's section" >&2
  fi
  exit 1
fi
# Without the blank lines around it.
printf '%s\n' "$body" | sed -e '/./,$!d' | tac | sed -e '/./,$!d' | tac
