//! The fake IntakeQ: a shared in-memory account ([`store`]), the HTTP server that
//! serves it faithfully to the API contract ([`server`]), the answer shapes it uses
//! where the contract is unconfirmed ([`profile`]), and the demo data set ([`demo`]).
//! Used by `intakeq-fs mock-server`, `intakeq-fs demo` and the tests.

pub mod demo;
pub mod profile;
pub mod server;
pub mod store;
