//! devcert: issue and manage X.509 device certificates for MQTT/IoT fleets.
//!
//! The library holds everything; the `devcert` binary only parses arguments,
//! calls into these modules and prints.

pub mod digest;
pub mod error;
pub mod name;
pub mod openssl_conf;
pub mod profile;

pub use error::{Error, ErrorKind, Result};
