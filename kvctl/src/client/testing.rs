//! The fake node of the client library's tests ([`shared::client::testing`]), for kvctl's:
//! a real tarpc server on a loopback port whose answers are fixed by a [`Fake`] value.

pub use shared::client::testing::*;
