// The pod sandbox ("pause") binary for the real node of ../../node-up.sh:
// Debian ships no pause image and there is no registry here, so node-up.sh
// packs this static binary into an image itself. Standard library only.
module hostrole.local/e2e/cluster/tools/pause

go 1.25.0
