#!/usr/bin/env bash
# The main job on the embedded defaults, in a throw-away home (.demo/): register the example works, scan the
# sample feed (a folder, then RSS and HTML feeds over HTTP from a server on 127.0.0.1), show the matches and a
# report, write an evidence packet, verify the ledger, anchor it on the managed local chain, issue a certificate
# and verify it against a reposted copy. Run through `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export PROVENANCE_HOME="$PWD/.demo"
export PROVENANCE_PASSPHRASE="demo passphrase (use a real one, or the prompt)"
rm -rf "$PROVENANCE_HOME"

run() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
# The sample feeds of examples/feeds/ served over real HTTP, on loopback (hence --allow-private below).
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python -m http.server "$port" --bind 127.0.0.1 --directory examples >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
site="http://127.0.0.1:$port"

run provenance init
run provenance key new --name "Aigerim"
run provenance register examples/works --title-from-filename --license "CC BY-NC 4.0"
run provenance works list
run provenance allow 5 --source '*/post_02.jpg' --note "my own repost"
run provenance scan examples/feed --report "$PROVENANCE_HOME/report.html"
run provenance scan --allow-private "$site/feeds/rss.xml" "$site/feeds/page.html"
run provenance scan --allow-private "$site/feeds/rss.xml" "$site/feeds/page.html"
run provenance evidence 3 -o "$PROVENANCE_HOME/evidence-3"
run provenance ledger verify
run provenance selftest
run provenance anchor
run provenance anchors list
run provenance chain status
run provenance evidence 3 -o "$PROVENANCE_HOME/evidence-3"
run provenance certificate 1 -o "$PROVENANCE_HOME/certificate-1.json"
run provenance verify "$PROVENANCE_HOME/certificate-1.json" --image examples/feed/post_04.jpg
printf '\nopen %s in a browser to see the report\n' "$PROVENANCE_HOME/report.html"
