#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine; does nothing when it is all there.
# Used by .ci/run and by ./test.sh, so that both work on a new machine.
set -euo pipefail

# curl: the web role's tests and the cluster scripts; openssl: per-run cluster certificates;
# iproute2 (ss): free ports; procps, util-linux (setsid), coreutils: process handling.
# rclone, cadaver, davfs2 (a FUSE mount): the file role's clients; swaks: the mail role's SMTP
# client, mutt its mail reader (Python's smtplib/imaplib/poplib come with python3); neomutt
# (Fcc to an IMAP Sent folder) and isync (mbsync) sync folders with the mail role; dovecot-imapd
# (its `imap` binary run preauthenticated, no daemon) reads and writes the same Maildir++ volume.
# offlineimap3, getmail6 and fetchmail: real clients of the implicit-TLS ports (IMAPS, POP3S;
# agent/tests/it/mail_tls.rs).
# postfix, sasl2-bin (saslpasswd2): the mail role's smarthost test runs its own Postfix instance
# (STARTTLS, Cyrus SASL AUTH) as the relay (agent/tests/it/mail_outbound.rs); no system instance
# is configured or needed (debconf: "No configuration", so the package starts none).
# chromium, chromium-driver, python3-selenium: the browser tests (agent/tests/it/peer_ui.rs, file_ui.rs, web_ui.rs).
# litmus: the WebDAV compliance suite against the file role (agent/tests/it/litmus.rs); nginx with
# libnginx-mod-http-dav-ext: the same run against nginx's DAV module, printed for comparison.
# ngircd (the reference IRC server, run unprivileged on a loopback port by the test itself, no
# system instance needed), python3-irc (the Python irc library, for /usr/bin/python3), irssi and
# weechat-headless: the chat role's clients (agent/tests/it/chat_clients.rs).
# shellcheck: actionlint (operator/tests/release.rs) checks the workflows' run: scripts with it.
# ffmpeg: the radio role's tests generate audio fixtures, feed a live mount as an Icecast source
# and decode what listeners get (agent/radio/tests/); ezstream: a libshout source client (Icecast's
# own source library); icecast2 (the reference server, run unprivileged by the test itself) and
# mpg123, mpv: listeners (agent/radio/tests/listeners.rs, and the radio client's tests).
# cups-ipp-utils: ipptool with CUPS' IPP conformance tests, and ippeveprinter (CUPS' reference IPP
# Everywhere printer) beside the print role; cups and cups-client: a real CUPS queue (cupsd run
# by the test itself on a loopback port) pointed at the print role, fed by lp
# (agent/print/tests/). ghostscript: the print tests render their PWG raster and JPEG fixtures
# from a PDF written by the test; dbus-daemon: a private bus the tests start for ippeveprinter,
# whose Avahi client needs one to connect to even with DNS-SD off (agent/print/tests/,
# agent/tests/it/print_clients.rs).
# graphviz (dot) and python3-jsonschema: the topology exports (`matrix --format dot|json`) are
# rendered by Graphviz and validated against their JSON schema (operator/tests/topology.rs).
packages=(curl ca-certificates openssl iproute2 procps util-linux rclone cadaver davfs2 swaks libnet-ssleay-perl mutt
  neomutt isync dovecot-imapd offlineimap3 getmail6 fetchmail postfix sasl2-bin
  chromium chromium-driver python3-selenium litmus nginx libnginx-mod-http-dav-ext shellcheck
  ngircd python3-irc irssi weechat-headless ffmpeg ezstream icecast2 mpg123 mpv
  cups-ipp-utils cups cups-client ghostscript dbus-daemon graphviz python3-jsonschema)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Postfix asks what to configure: nothing (the tests write their own main.cf).
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python's smtplib/imaplib/poplib are mail clients in the tests; any python3 on PATH will do.
if ! command -v python3 >/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends python3
fi
for tool in cargo rustfmt cargo-clippy; do
  command -v "$tool" >/dev/null || { echo "missing $tool: install Rust 1.95 with rustfmt and clippy" >&2; exit 1; }
done
# Go builds the local control plane (e2e/cluster/build.sh), h2spec for the web role's HTTP/2
# test (agent/tests/tools/h2spec/build.sh, run by that test) and actionlint for the workflow check
# (scripts/tools/actionlint/build.sh, run by operator/tests/release.rs); only needed when their
# cache is cold.
if ! command -v go >/dev/null && [[ ! -x /usr/local/go/bin/go ]]; then
  echo "note: no Go toolchain; e2e/cluster/build.sh, agent/tests/tools/h2spec/build.sh and scripts/tools/actionlint/build.sh need Go >= 1.26 unless ~/.cache/hostrole holds the binaries" >&2
fi
