//! The public half of a token key as a SubjectPublicKeyInfo, built from
//! the token's attributes (CKA_EC_PARAMS/CKA_EC_POINT, CKA_MODULUS and
//! CKA_PUBLIC_EXPONENT) exactly as OpenSSL encodes it.

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::{Decode, Encode};

use super::attr_bytes;
use crate::keys::{Curve, OID_EC_PUBLIC_KEY, OID_RSA_ENCRYPTION};

/// The public key object beside a private key: same id, else same label.
pub(super) fn public_object(
    session: &Session,
    private_attrs: &[Attribute],
) -> Option<ObjectHandle> {
    let by = |attr: Attribute| {
        session
            .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), attr])
            .ok()
            .filter(|v| v.len() == 1)
            .map(|v| v[0])
    };
    attr_bytes(private_attrs, AttributeType::Id)
        .filter(|id| !id.is_empty())
        .and_then(|id| by(Attribute::Id(id)))
        .or_else(|| {
            attr_bytes(private_attrs, AttributeType::Label).and_then(|l| by(Attribute::Label(l)))
        })
}

/// The curve of CKA_EC_PARAMS (a DER namedCurve OID).
pub(super) fn curve_of(params: &[u8]) -> Result<Curve, String> {
    let oid = der::asn1::ObjectIdentifier::from_der(params)
        .map_err(|_| "the EC key's parameters are not a named curve".to_string())?;
    Curve::from_oid(&oid)
        .ok_or_else(|| format!("unsupported EC curve {oid} (devcert supports P-256 and P-384)"))
}

/// SubjectPublicKeyInfo for CKA_EC_POINT: a DER OCTET STRING holding the
/// uncompressed point, as the standard says (some tokens give it bare).
pub(super) fn ec_point_spki(curve: Curve, ec_point: &[u8]) -> Result<Vec<u8>, String> {
    let field_bytes = match curve {
        Curve::P256 => 32,
        Curve::P384 => 48,
    };
    let bare_len = 1 + 2 * field_bytes;
    let point = if ec_point.len() == bare_len {
        ec_point.to_vec()
    } else {
        der::asn1::OctetString::from_der(ec_point)
            .map_err(|_| format!("the token's public key is not a {curve} point"))?
            .as_bytes()
            .to_vec()
    };
    let valid = match curve {
        Curve::P256 => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
        Curve::P384 => p384::PublicKey::from_sec1_bytes(&point).is_ok(),
    };
    if !valid {
        return Err(format!(
            "the token's public key is not a valid {curve} point"
        ));
    }
    let curve_oid = curve.oid();
    spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some((&curve_oid).into()),
        },
        subject_public_key: der::asn1::BitStringRef::from_bytes(&point)
            .map_err(|e| e.to_string())?,
    }
    .to_der()
    .map_err(|e| e.to_string())
}

/// SubjectPublicKeyInfo for an RSA modulus and exponent (big-endian).
pub(super) fn rsa_spki(n: &[u8], e: &[u8]) -> Result<Vec<u8>, String> {
    fn uint(b: &[u8]) -> Result<der::asn1::UintRef<'_>, String> {
        der::asn1::UintRef::new(b).map_err(|e| e.to_string())
    }
    let pkcs1 = pkcs1::RsaPublicKey {
        modulus: uint(n)?,
        public_exponent: uint(e)?,
    }
    .to_der()
    .map_err(|e| e.to_string())?;
    spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: OID_RSA_ENCRYPTION,
            parameters: Some(der::asn1::AnyRef::NULL),
        },
        subject_public_key: der::asn1::BitStringRef::from_bytes(&pkcs1)
            .map_err(|e| e.to_string())?,
    }
    .to_der()
    .map_err(|e| e.to_string())
}

pub(super) fn bit_len(n: &[u8]) -> usize {
    let lead = n.iter().take_while(|&&b| b == 0).count();
    (n.len() - lead) * 8 - n.get(lead).map_or(0, |b| b.leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyAlgo;

    #[test]
    fn rsa_bits_ignore_leading_zeros() {
        assert_eq!(bit_len(&[0, 0x80, 0]), 16);
        assert_eq!(bit_len(&[0x01, 0]), 9);
    }

    #[test]
    fn ec_points_come_wrapped_or_bare() {
        let key = crate::keys::PrivateKey::generate(KeyAlgo::Ec(Curve::P256)).unwrap();
        let spki = spki::SubjectPublicKeyInfoRef::from_der(key.spki_der()).unwrap();
        let point = spki.subject_public_key.raw_bytes();
        let wrapped = der::asn1::OctetString::new(point)
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(
            ec_point_spki(Curve::P256, &wrapped).unwrap(),
            key.spki_der()
        );
        assert_eq!(ec_point_spki(Curve::P256, point).unwrap(), key.spki_der());
        assert!(ec_point_spki(Curve::P384, point).is_err());
    }
}
