//! The client side of `keyward healthcheck` when the listener serves HTTPS: a TLS connection
//! to the server's own address on this host.
//!
//! It does not verify the certificate. The probe connects to the listener's own address, sends
//! no credential and reads nothing but the status of `/api/health`, so nothing can be stolen or
//! forged through it; and the certificate names the public domain (not 127.0.0.1), may still be
//! an operator's self-signed one, or not yet be issued by ACME on a first start. Verifying it
//! would make a liveness check depend on DNS names and CA trust it has no way to know. This
//! verifier is used by this probe and nothing else.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Accepts any certificate, but still checks that the handshake's signatures are made by the
/// key of the certificate presented (the TLS session itself is sound).
#[derive(Debug)]
struct LoopbackProbe(Arc<CryptoProvider>);

impl ServerCertVerifier for LoopbackProbe {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration of the loopback health probe (see the module's note).
pub fn loopback_probe_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = super::provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LoopbackProbe(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}
