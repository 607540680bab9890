//! Subject templates: one subject shape, a CN per device (`batch`, and
//! `issue --config T --cn X`). The template is a `[req]` config or a
//! `/C=../O=..` subject; its CN field, if any, is replaced per device, else
//! a CN is added last.

use der::{Decode, Encode};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

use crate::csr::ReqConfig;
use crate::error::{Error, Result};
use crate::name::common_name;
use crate::openssl_conf::Config;

/// How each device's subject is made.
pub enum SubjectTemplate {
    /// A bare CN.
    Cn,
    /// A `[req]` config whose CN field is replaced per device (the value
    /// goes through the config's own string rules, e.g. `string_mask`).
    Config(Box<Config>),
    /// A parsed subject (`--subject /C=../O=..`).
    Subject(Name),
}

impl SubjectTemplate {
    /// Checks the config template once, up front.
    pub fn from_config(conf: Config) -> Result<SubjectTemplate> {
        ReqConfig::from_config(&conf)?;
        cn_entry(&conf).ok_or_else(|| {
            Error::parse(
                "invalid template",
                "its distinguished_name section has no CN field",
            )
            .file(&conf.label)
        })?;
        Ok(SubjectTemplate::Config(Box::new(conf)))
    }

    pub fn name_for(&self, cn: &str) -> Result<Name> {
        match self {
            SubjectTemplate::Cn => common_name(cn),
            SubjectTemplate::Config(conf) => {
                let mut conf = (**conf).clone();
                let (s, e) = cn_entry(&conf)
                    .ok_or_else(|| Error::parse("invalid template", "no CN field"))?;
                conf.sections[s].entries[e].value = cn.to_string();
                Ok(ReqConfig::from_config(&conf)?.subject)
            }
            SubjectTemplate::Subject(template) => with_cn(template, cn),
        }
    }
}

/// `template` with its (last) CN value replaced by `cn`, or with a CN RDN
/// added when it has none. Every other attribute keeps its bytes.
fn with_cn(template: &Name, cn: &str) -> Result<Name> {
    let oid = const_oid::db::rfc4519::CN;
    let new_cn: AttributeTypeAndValue = common_name(cn)?
        .iter_rdn()
        .flat_map(|rdn| rdn.iter())
        .next()
        .cloned()
        .ok_or_else(|| Error::parse("invalid subject", "no CN"))?;
    let mut rdns: Vec<RelativeDistinguishedName> = template.iter_rdn().cloned().collect();
    let last_cn = rdns.iter().rposition(|r| r.iter().any(|a| a.oid == oid));
    match last_cn {
        Some(i) => {
            let atvs: Vec<AttributeTypeAndValue> = rdns[i]
                .iter()
                .map(|a| {
                    if a.oid == oid {
                        new_cn.clone()
                    } else {
                        a.clone()
                    }
                })
                .collect();
            rdns[i] = RelativeDistinguishedName::try_from(atvs)
                .map_err(|e| Error::crypto("cannot encode subject", e))?;
        }
        None => rdns.push(
            RelativeDistinguishedName::try_from(vec![new_cn])
                .map_err(|e| Error::crypto("cannot encode subject", e))?,
        ),
    }
    // `Name` has no public constructor from RDNs (see name/mod.rs): a DER
    // round trip.
    let der = RdnSequence::from(rdns)
        .to_der()
        .map_err(|e| Error::crypto("cannot encode subject", e))?;
    Name::from_der(&der).map_err(|e| Error::crypto("cannot encode subject", e))
}

/// (section, entry) of the CN in the config's distinguished_name section.
fn cn_entry(conf: &Config) -> Option<(usize, usize)> {
    let dn = &conf.get("req", "distinguished_name")?.value;
    let s = conf.sections.iter().position(|x| &x.name == dn)?;
    let e = conf.sections[s].entries.iter().position(|e| {
        let key = e
            .key
            .split(['.', ':', ','])
            .next_back()
            .unwrap_or(&e.key)
            .trim_start_matches('+');
        key == "CN" || key == "commonName"
    })?;
    Some((s, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::{StringMask, parse_subject, to_rfc4514};

    #[test]
    fn subject_template_replaces_or_adds_the_cn() {
        let t = SubjectTemplate::Subject(
            parse_subject("/C=CN/O=ALI/CN=x/OU=MQTT", StringMask::default()).unwrap(),
        );
        assert_eq!(
            to_rfc4514(&t.name_for("dev-1").unwrap()),
            "OU=MQTT,CN=dev-1,O=ALI,C=CN"
        );
        let t =
            SubjectTemplate::Subject(parse_subject("/C=CN/O=ALI", StringMask::default()).unwrap());
        assert_eq!(
            to_rfc4514(&t.name_for("dev-2").unwrap()),
            "CN=dev-2,O=ALI,C=CN"
        );
        // The CN is encoded as `--cn` would encode it.
        let alone = common_name("dev-2").unwrap();
        let made = t.name_for("dev-2").unwrap();
        assert_eq!(made.iter_rdn().last(), alone.iter_rdn().last());
    }
}
