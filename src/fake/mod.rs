//! The fake IntakeQ: a shared in-memory account ([`store`]), the HTTP server that
//! serves it faithfully to the API contract ([`server`]), and the demo data set
//! ([`demo`]). Used by `intakeq-fs mock-server`, `intakeq-fs demo` and the tests.

pub mod demo;
pub mod server;
pub mod store;
