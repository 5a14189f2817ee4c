//! The peer-to-peer roles: the [`index`] (directory of hybrid networks) and the [`peer`]
//! (content-addressed sharing, discovery, downloads, its UI), and what they share: the wire
//! format ([`wire`], in `hostrole-proto`) and how every request proves it comes from a member
//! of the network ([`auth`]). Neither role reaches into the other; both speak this.

pub mod auth;
pub mod index;
pub mod peer;

pub use hostrole_proto::envelope;
pub use hostrole_proto::peer as wire;
pub use hostrole_proto::peer::{valid_address, valid_hash, valid_network, valid_peer_id};
