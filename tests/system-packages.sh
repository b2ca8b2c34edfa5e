#!/usr/bin/env bash
# Install the Debian packages the tests drive for real, when they are missing: chromium (the
# browser-client tests run Debian's build through Playwright; Playwright's own download does not
# work here), redis-server (the backplane tests start their own on a free port), postgresql (the
# PostgreSQL source's tests make their own cluster with initdb) and npm (the React hooks' tests). Called by the README's test command and by .ci/run; does nothing when all
# are present.
set -euo pipefail
missing=()
command -v chromium > /dev/null || missing+=(chromium)
command -v redis-server > /dev/null || missing+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || missing+=(postgresql)
command -v npm > /dev/null || missing+=(nodejs npm)  # the React hooks' tests (clients/js) need Node 20 or newer
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages for the tests: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" > /dev/null
