//! Making a CA key inside the token: private, sensitive, never
//! extractable, for signing only, and taken away again when what it was
//! made for fails.

use std::path::Path;

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType};
use der::{Decode, Encode};

use super::public_key::{ec_point_spki, rsa_spki};
use super::{
    Pkcs11Uri, Sessions, TokenKey, attr_bytes, find_token, login, module_for, token_error,
};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::KeyAlgo;

impl TokenKey {
    /// Generates a key pair in the token under the URI's `object` label (and
    /// `id`, else the public key's SHA-1 key id, as the certificate's
    /// subjectKeyIdentifier): private, sensitive, never extractable, for
    /// signing only. Refuses a label or id the token already has.
    pub fn generate(uri: &Pkcs11Uri, module: Option<&Path>, algo: KeyAlgo) -> Result<TokenKey> {
        let what = "cannot generate a key in the PKCS#11 token";
        let refuse = |why: String| Error::new(ErrorKind::Token, what, why).file(uri.to_string());
        let Some(label) = &uri.object else {
            return Err(
                refuse("the URI names no object".into()).hint("add object=LABEL to the URI")
            );
        };
        if uri.object_type.as_deref().is_some_and(|t| t != "private") {
            return Err(refuse("a new key is a private key: leave type= out".into()));
        }
        if let KeyAlgo::Rsa(bits) = algo
            && !(2048..=4096).contains(&bits)
        {
            return Err(refuse(format!(
                "RSA keys in a token are 2048 to 4096 bits, not {bits}"
            )));
        }
        let ctx = module_for(uri, module)?;
        let (slot, info) = find_token(&ctx, uri)?;
        let fail = |e: CkError| token_error(what, uri, &e);
        let session = ctx.open_rw_session(slot).map_err(fail)?;
        login(&session, &info, uri)?;
        let token = info.label().trim_end();
        for (name, attr) in [
            ("label", Some(Attribute::Label(label.as_bytes().to_vec()))),
            ("id", uri.id.clone().map(Attribute::Id)),
        ] {
            let Some(attr) = attr else { continue };
            if !session.find_objects(&[attr]).map_err(fail)?.is_empty() {
                return Err(refuse(format!(
                    "token '{token}' already has an object with this {name}; devcert never replaces a key in a token"
                ))
                .hint("choose another object= (or delete the old key with pkcs11-tool --delete-object)"));
            }
        }
        let mut common = vec![
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        if let Some(id) = &uri.id {
            common.push(Attribute::Id(id.clone()));
        }
        // Signing only: a CA key that can also decrypt or unwrap is one
        // more way to misuse it.
        let mut public = common.clone();
        public.extend([
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
        ]);
        let mut private = common;
        private.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
        ]);
        let mechanism = match algo {
            KeyAlgo::Ec(curve) => {
                let oid = curve.oid().to_der().map_err(|e| refuse(e.to_string()))?;
                public.push(Attribute::EcParams(oid));
                private.push(Attribute::Derive(false));
                Mechanism::EccKeyPairGen
            }
            KeyAlgo::Rsa(bits) => {
                public.extend([
                    Attribute::ModulusBits((bits as u64).into()),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                ]);
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        let (pub_h, priv_h) = session
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(fail)?;
        let mut key = TokenKey {
            ctx,
            slot,
            uri: uri.clone(),
            key: priv_h,
            public: Some(pub_h),
            algo,
            spki: None,
            sessions: Sessions::new(session),
        };
        // From here on a failure takes the new objects away again.
        match key.finish_generated() {
            Ok(()) => Ok(key),
            Err(e) => {
                let _ = key.destroy();
                Err(e)
            }
        }
    }

    /// Reads the new public key, sets the id and proves the pair signs.
    fn finish_generated(&mut self) -> Result<()> {
        let what = "cannot generate a key in the PKCS#11 token";
        let refuse =
            |why: String| Error::new(ErrorKind::Token, what, why).file(self.uri.to_string());
        let pub_h = self.public.ok_or_else(|| refuse("no public key".into()))?;
        let spki = self.with_session(|s| {
            let want = [
                AttributeType::EcPoint,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
            ];
            s.get_attributes(pub_h, &want)
        })?;
        let spki = match self.algo {
            KeyAlgo::Ec(curve) => ec_point_spki(
                curve,
                &attr_bytes(&spki, AttributeType::EcPoint)
                    .ok_or_else(|| refuse("no CKA_EC_POINT".into()))?,
            ),
            KeyAlgo::Rsa(_) => rsa_spki(
                &attr_bytes(&spki, AttributeType::Modulus)
                    .ok_or_else(|| refuse("no CKA_MODULUS".into()))?,
                &attr_bytes(&spki, AttributeType::PublicExponent)
                    .ok_or_else(|| refuse("no CKA_PUBLIC_EXPONENT".into()))?,
            ),
        }
        .map_err(refuse)?;
        if self.uri.id.is_none() {
            let parsed = spki::SubjectPublicKeyInfoOwned::from_der(&spki)
                .map_err(|e| refuse(e.to_string()))?;
            let id = crate::profile::key_id(&parsed);
            let (private, public) = (self.key, pub_h);
            self.with_session(|s| {
                s.update_attributes(private, &[Attribute::Id(id.clone())])?;
                s.update_attributes(public, &[Attribute::Id(id.clone())])
            })
            .map_err(|e| {
                e.hint("give id=... in the URI if the token does not let devcert set it")
            })?;
        }
        if !self.proves(&spki)? {
            return Err(refuse(
                "the new key's signature does not verify with its public key".into(),
            ));
        }
        self.spki = Some(spki);
        Ok(())
    }

    /// Removes a key `generate` made (when what it was made for failed).
    pub fn destroy(&self) -> Result<()> {
        let Some(public) = self.public else {
            return Ok(());
        };
        let key = self.key;
        self.with_session(|s| {
            s.destroy_object(key)?;
            s.destroy_object(public)
        })
    }
}
