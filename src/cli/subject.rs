//! Argument groups shared by several commands: where a subject comes from,
//! the extension profile, and the validity period.

use std::time::SystemTime;

use clap::Args;
use devcert::csr::ReqConfig;
use devcert::error::{Error, Result};
use devcert::name::{StringMask, common_name, parse_subject};
use devcert::openssl_conf::Config;
use devcert::profile::ExtensionProfile;
use devcert::sign::{Lifetime, parse_time};
use devcert::template::SubjectTemplate;
use x509_cert::name::Name;

use super::read_input;

/// Reads an OpenSSL-syntax config file as UTF-8.
pub fn read_config(path: &str) -> Result<Config> {
    let input = read_input(path)?;
    let text = String::from_utf8(input.bytes)
        .map_err(|_| Error::parse("cannot read config", "not UTF-8 text").file(&input.label))?;
    Config::parse(&text, &input.label)
}

/// The subject of a request: from a config's `[req]`, a `/C=../CN=..`
/// string, or (for `issue`) a bare CN, or a config used as a template
/// for that CN (`issue --config T --cn X`).
pub struct Subject {
    pub name: Name,
    pub req: Option<ReqConfig>,
}

pub fn resolve_subject(
    config: Option<&str>,
    subject: Option<&str>,
    cn: Option<&str>,
) -> Result<Subject> {
    match (config, subject, cn) {
        (Some(path), _, cn) => {
            let conf = read_config(path)?;
            let req = ReqConfig::from_config(&conf)?;
            // With --cn the config is a template: its subject, this CN.
            let name = match cn {
                Some(cn) => SubjectTemplate::from_config(conf)?
                    .name_for(cn)
                    .map_err(|e| e.file("--cn"))?,
                None => req.subject.clone(),
            };
            Ok(Subject {
                name,
                req: Some(req),
            })
        }
        (None, Some(s), _) => Ok(Subject {
            name: subject_arg(s)?,
            req: None,
        }),
        (None, None, Some(cn)) => Ok(Subject {
            name: common_name(cn).map_err(|e| e.file("--cn"))?,
            req: None,
        }),
        (None, None, None) => Err(Error::parse(
            "no subject",
            "give --config, --subject or --cn",
        )),
    }
}

pub fn subject_arg(s: &str) -> Result<Name> {
    parse_subject(s, StringMask::default()).map_err(|e| e.file("--subject"))
}

/// `--profile FILE|device|ca` and `--extensions SECTION`.
#[derive(Args, Clone)]
pub struct ProfileArgs {
    /// Extension profile: an OpenSSL extfile, or the built-in `device` or `ca`
    #[arg(long, value_name = "FILE|device|ca", default_value = "device")]
    pub profile: String,
    /// Section of the profile file to use (default: its unnamed top section)
    #[arg(long, value_name = "SECTION")]
    pub extensions: Option<String>,
}

impl ProfileArgs {
    pub fn load(&self) -> Result<ExtensionProfile> {
        match self.profile.as_str() {
            "device" if self.extensions.is_none() => Ok(ExtensionProfile::device()),
            "ca" if self.extensions.is_none() => Ok(ExtensionProfile::ca(None)),
            path => {
                let conf = read_config(path)?;
                if let Some(s) = &self.extensions
                    && conf.section(s).is_none()
                {
                    return Err(
                        Error::parse("invalid profile", format!("no section [{s}]")).file(path)
                    );
                }
                ExtensionProfile::from_config(&conf, self.extensions.as_deref())
            }
        }
    }
}

/// `--days N` or `--not-after RFC3339`.
#[derive(Args, Clone)]
pub struct ValidityArgs {
    /// Days the certificate is valid from now
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36500), conflicts_with = "not_after")]
    pub days: Option<u32>,
    /// End of validity, RFC 3339 (e.g. 2030-01-01T00:00:00Z)
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub not_after: Option<SystemTime>,
}

impl ValidityArgs {
    pub fn lifetime(&self, default_days: u32) -> Lifetime {
        match (self.days, self.not_after) {
            (_, Some(t)) => Lifetime::NotAfter(t),
            (Some(d), None) => Lifetime::Days(d),
            (None, None) => Lifetime::Days(default_days),
        }
    }
}
