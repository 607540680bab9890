//! Lenient ASN.1 shapes for certificates and CRLs.
//!
//! `x509-cert` refuses what a display tool must still show: times before
//! 1970 (a UTCTime may say 1950–1969), serials longer than 21 octets and
//! version numbers it does not know. These shapes keep such fields raw so
//! `inspect` can print what OpenSSL prints; everything else reuses the
//! `x509-cert` types.

use der::asn1::{AnyRef, BitStringRef, IntRef};
use der::{Decode, Encode, Length, Reader, Sequence, Tag, Tagged, Writer};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime};
use x509_cert::ext::Extension;
use x509_cert::name::Name;

#[derive(Sequence)]
pub struct Cert<'a> {
    pub tbs: TbsCert<'a>,
    pub signature_algorithm: AlgorithmIdentifierRef<'a>,
    pub signature: BitStringRef<'a>,
}

#[derive(Sequence)]
pub struct TbsCert<'a> {
    /// 0 for v1, 2 for v3.
    #[asn1(context_specific = "0", default = "Default::default")]
    pub version: u8,
    pub serial: IntRef<'a>,
    pub signature: AlgorithmIdentifierRef<'a>,
    pub issuer: Name,
    pub validity: Validity<'a>,
    pub subject: Name,
    pub spki: SubjectPublicKeyInfoRef<'a>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub issuer_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    pub subject_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    pub extensions: Option<Vec<Extension>>,
}

#[derive(Sequence)]
pub struct Validity<'a> {
    pub not_before: RawTime<'a>,
    pub not_after: RawTime<'a>,
}

#[derive(Sequence)]
pub struct Crl<'a> {
    pub tbs: TbsCrl<'a>,
    pub signature_algorithm: AlgorithmIdentifierRef<'a>,
    pub signature: BitStringRef<'a>,
}

#[derive(Sequence)]
pub struct TbsCrl<'a> {
    /// Absent for v1, 1 for v2.
    pub version: Option<u8>,
    pub signature: AlgorithmIdentifierRef<'a>,
    pub issuer: Name,
    pub this_update: RawTime<'a>,
    pub next_update: Option<RawTime<'a>>,
    pub revoked: Option<Vec<RevokedEntry<'a>>>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub extensions: Option<Vec<Extension>>,
}

#[derive(Sequence)]
pub struct RevokedEntry<'a> {
    pub serial: IntRef<'a>,
    pub revocation_date: RawTime<'a>,
    pub extensions: Option<Vec<Extension>>,
}

/// A UTCTime or GeneralizedTime kept as its bytes; [`RawTime::to_datetime`]
/// reads it with the full RFC 5280 year range.
#[derive(Clone, Copy)]
pub struct RawTime<'a>(AnyRef<'a>);

impl<'a> Decode<'a> for RawTime<'a> {
    type Error = der::Error;

    fn decode<R: Reader<'a>>(reader: &mut R) -> der::Result<Self> {
        let any = AnyRef::decode(reader)?;
        match any.tag() {
            Tag::UtcTime | Tag::GeneralizedTime => Ok(RawTime(any)),
            other => Err(other.unexpected_error(None).into()),
        }
    }
}

impl Tagged for RawTime<'_> {
    fn tag(&self) -> Tag {
        self.0.tag()
    }
}

impl<'a> der::Choice<'a> for RawTime<'a> {
    fn can_decode(tag: Tag) -> bool {
        matches!(tag, Tag::UtcTime | Tag::GeneralizedTime)
    }
}

// Only needed because `derive(Sequence)` also derives encoding.
impl Encode for RawTime<'_> {
    fn encoded_len(&self) -> der::Result<Length> {
        self.0.encoded_len()
    }

    fn encode(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.0.encode(writer)
    }
}

impl RawTime<'_> {
    /// The time in UTC. UTCTime years 50–99 are 1950–1999 (RFC 5280); a
    /// GeneralizedTime may carry fractional seconds, which are dropped.
    pub fn to_datetime(&self) -> Result<OffsetDateTime, String> {
        let text = std::str::from_utf8(self.0.value())
            .ok()
            .filter(|t| t.is_ascii())
            .ok_or("time is not ASCII text")?;
        let bad = || format!("malformed time '{}'", text.escape_default());
        let body = text.strip_suffix('Z').ok_or_else(bad)?;
        let (year, rest) = if self.0.tag() == Tag::UtcTime {
            let yy: i32 = digits(body.get(..2).ok_or_else(bad)?).ok_or_else(bad)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &body[2..])
        } else {
            let yyyy = digits(body.get(..4).ok_or_else(bad)?).ok_or_else(bad)?;
            let rest = &body[4..];
            (yyyy, rest.split_once('.').map_or(rest, |(whole, _)| whole))
        };
        if rest.len() != 10 {
            return Err(bad());
        }
        let field = |i: usize| digits::<u8>(&rest[i..i + 2]).ok_or_else(bad);
        let month = Month::try_from(field(0)?).map_err(|_| bad())?;
        let date = Date::from_calendar_date(year, month, field(2)?).map_err(|_| bad())?;
        let time = time::Time::from_hms(field(4)?, field(6)?, field(8)?).map_err(|_| bad())?;
        Ok(PrimitiveDateTime::new(date, time).assume_utc())
    }
}

fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Decodes `T` from the front of `der`, ignoring anything after it (OpenSSL's
/// `TRUSTED CERTIFICATE` appends its trust settings to the certificate).
pub fn decode_prefix<'a, T: Decode<'a, Error = der::Error>>(der: &'a [u8]) -> der::Result<T> {
    let mut reader = der::SliceReader::new(der)?;
    T::decode(&mut reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(tag: Tag, s: &str) -> Result<OffsetDateTime, String> {
        RawTime(AnyRef::new(tag, s.as_bytes()).unwrap()).to_datetime()
    }

    #[test]
    fn utc_time_covers_1950_to_2049() {
        let t = time(Tag::UtcTime, "650101000000Z").unwrap();
        assert_eq!(t.year(), 1965);
        assert_eq!(time(Tag::UtcTime, "491231235959Z").unwrap().year(), 2049);
    }

    #[test]
    fn generalized_time_with_fraction_and_far_years() {
        let t = time(Tag::GeneralizedTime, "99991231235959.5Z").unwrap();
        assert_eq!((t.year(), t.second()), (9999, 59));
        assert_eq!(
            time(Tag::GeneralizedTime, "19000101000000Z")
                .unwrap()
                .year(),
            1900
        );
    }

    #[test]
    fn malformed_times_are_errors_not_panics() {
        for s in [
            "",
            "Z",
            "6501Z",
            "651301000000Z",
            "65010100000Z",
            "ab0101000000Z",
            "650101000000",
        ] {
            assert!(time(Tag::UtcTime, s).is_err(), "{s}");
        }
        assert!(time(Tag::GeneralizedTime, "2020010100000Z").is_err());
    }
}
