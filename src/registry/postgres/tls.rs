//! TLS to the server through rustls, with libpq's `sslmode` meanings:
//! `prefer`/`require` encrypt without checking who answers (as libpq;
//! `require` with `sslrootcert` checks the chain, as libpq does when a root
//! file exists), `verify-ca` checks the chain, `verify-full` also the name.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::super::store::{StoreError, StoreResult};
use super::settings::{Settings, SslMode};

/// The connector for `s` (also for `disable`, where it is never used).
pub fn connector(s: &Settings) -> StoreResult<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algs = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = match (s.sslmode, &s.sslrootcert) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
            Arc::new(Unverified { algs })
        }
        (mode, _) => {
            let roots = Arc::new(roots(s)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| StoreError::new(format!("cannot use the root certificates: {e}")))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::new(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The roots of `sslrootcert`, else of `~/.postgresql/root.crt` (libpq's
/// default); verifying against nothing is an error, not a silent pass.
fn roots(s: &Settings) -> StoreResult<RootCertStore> {
    let file = s.sslrootcert.clone().or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = std::path::Path::new(&home).join(".postgresql/root.crt");
        p.exists().then(|| p.to_string_lossy().into_owned())
    });
    let Some(file) = file else {
        return Err(StoreError::new(
            "sslmode verify-ca/verify-full needs root certificates, and there are none",
        )
        .hint("add sslrootcert=/path/to/ca.pem to the URL, or put the roots in ~/.postgresql/root.crt"));
    };
    let text = std::fs::read(&file).map_err(|e| {
        StoreError::new(format!(
            "cannot read sslrootcert {file}: {}",
            crate::error::Error::io("", &file, &e).why
        ))
    })?;
    let mut store = RootCertStore::empty();
    for p in
        pem::parse_many(&text).map_err(|e| StoreError::new(format!("sslrootcert {file}: {e}")))?
    {
        if p.tag() == "CERTIFICATE" {
            store
                .add(CertificateDer::from(p.into_contents()))
                .map_err(|e| StoreError::new(format!("sslrootcert {file}: {e}")))?;
        }
    }
    if store.is_empty() {
        return Err(StoreError::new(format!(
            "sslrootcert {file} holds no PEM certificate"
        )));
    }
    Ok(store)
}

/// libpq's `prefer`/`require`: encrypted, the server's certificate
/// unchecked (the handshake's own signatures still are).
#[derive(Debug)]
struct Unverified {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// `verify-ca`: the chain must verify, the name may differ.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A failed TLS connection in the user's terms: which check refused the
/// server (its chain, its name, its dates) or that the server speaks no
/// TLS; `None` when `e` is no TLS failure.
pub fn explain(e: &postgres::Error, s: &Settings, hosts: &str) -> Option<StoreError> {
    let root = s.sslrootcert.as_deref().unwrap_or("~/.postgresql/root.crt");
    let Some(tls) = rustls_error(e) else {
        let no_tls = std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
            .any(|e| e.to_string().contains("server does not support TLS"));
        return no_tls.then(|| {
            StoreError::new(format!(
                "cannot connect to {hosts}: the server does not offer TLS, and sslmode requires it"
            ))
            .hint("turn on ssl in the server's postgresql.conf, or (on a trusted network only) use sslmode=prefer")
        });
    };
    let err = match tls {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => StoreError::new(format!(
            "the server's certificate at {hosts} does not name that host (sslmode=verify-full)"
        ))
        .hint("connect by a name or address in the certificate's subjectAltName"),
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => StoreError::new(format!(
            "the server's certificate at {hosts} is not issued by a CA in sslrootcert {root}"
        ))
        .hint("give the CA that issued the server's certificate as sslrootcert"),
        rustls::Error::InvalidCertificate(why) => StoreError::new(format!(
            "the server's certificate at {hosts} is refused: {why:?}"
        )),
        other => StoreError::new(format!(
            "cannot connect to {hosts}: TLS handshake failed: {other}"
        )),
    };
    Some(err)
}

/// The rustls error under a connection error, if any (tokio-rustls wraps
/// it in an `io::Error`, whose `source()` skips it).
fn rustls_error(e: &postgres::Error) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}
