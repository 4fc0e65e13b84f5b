#!/usr/bin/env bash
# The main job on the embedded defaults, in a throw-away home (.demo/): register the example works, scan the
# sample feed, show the matches, verify the ledger, anchor it on the managed local chain, issue a certificate and
# verify it against a reposted copy. Run through `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export PROVENANCE_HOME="$PWD/.demo"
export PROVENANCE_PASSPHRASE="demo passphrase (use a real one, or the prompt)"
rm -rf "$PROVENANCE_HOME"

run() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
run provenance init
run provenance key new --name "Aigerim"
run provenance register examples/works --title-from-filename --license "CC BY-NC 4.0"
run provenance works list
run provenance scan examples/feed
run provenance ledger verify
run provenance selftest
run provenance anchor
run provenance anchors list
run provenance chain status
run provenance certificate 1 -o "$PROVENANCE_HOME/certificate-1.json"
run provenance verify "$PROVENANCE_HOME/certificate-1.json" --image examples/feed/post_04.jpg
