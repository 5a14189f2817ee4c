//! The hostrole agent: one binary in every host pod (or on a laptop) that starts the services of
//! the host's roles.
//!
//! - [`supervisor`] starts the roles a configuration names and stops them on SIGTERM;
//! - [`admin`] serves `/healthz`, `/readyz` and `/metrics`;
//! - [`clients`] is the client role: client loops against servers, their results (`/clients`,
//!   metrics, pod conditions);
//! - [`web`] is the web role; each role lives in its own module and is reached only through its
//!   small public surface;
//! - [`index`] and [`peer`] are the peer-to-peer roles; [`p2p`] is the protocol they share;
//! - [`net`] is the bounded, gracefully-stopping HTTP listener the roles share;
//! - [`standalone`] turns a HostRole manifest into a configuration, for `hostrole-agent up`.

pub mod admin;
pub mod clients;
pub mod config;
pub mod file;
pub mod guard;
pub mod index;
pub mod mail;
pub mod net;
pub mod p2p;
pub mod peer;
pub mod standalone;
pub mod supervisor;
pub mod users;
pub mod web;
