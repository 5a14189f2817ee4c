//! The agent's integration tests, one test binary (`cargo test -p hostrole-agent --test it`):
//! one module per area, each starting the real agent binary (`CARGO_BIN_EXE_hostrole-agent`)
//! and real clients. One binary links the agent's test dependencies once instead of once per
//! file; run one area with a module filter, e.g.
//! `cargo test -p hostrole-agent --test it mail_clients::`. The filter is a substring: `clients::`
//! also runs `file_clients::` and `mail_clients::` unless `-- --skip file_clients:: --skip
//! mail_clients::` follows (`--skip mail_clients` without `::` would also drop a `clients` test).
//!
//! Tests of different modules run concurrently in this one process, so nothing here may claim a
//! fixed port, directory or environment variable: ports come from `support::free_port` (one
//! counter for the whole binary), directories from `tempfile`, and environment variables are set
//! on the child `Command`, never on this process.

mod support;

mod chat_clients;
mod cli;
mod clients;
mod file_clients;
mod file_ui;
mod h2spec;
mod home_office;
mod http_listener;
mod litmus;
mod mail_attacks;
mod mail_clients;
mod mail_folders;
mod mail_outbound;
mod mail_tls;
mod p2p;
mod peer_ui;
mod print_clients;
mod radio_clients;
mod tls;
mod up_view;
mod web_curl;
mod web_ui;
