//! devcert: issue and manage X.509 device certificates for MQTT/IoT fleets.
//!
//! The library holds everything; the `devcert` binary only parses arguments,
//! calls into these modules and prints.

pub mod batch;
pub mod ca;
pub mod chain;
pub mod crypto;
pub mod csr;
pub mod digest;
pub mod error;
pub mod escape;
pub mod input;
pub mod inspect;
pub mod issue;
pub mod keys;
pub mod name;
pub mod openssl_conf;
pub mod output;
pub mod passphrase;
pub mod pkcs11;
pub mod pkcs12;
pub mod profile;
pub mod registry;
pub mod server;
pub mod sign;
pub mod template;
pub mod verify;

pub use error::{Error, ErrorKind, Result};
