//! Certificates made for a test: a CA, server certificates for 127.0.0.1 and localhost, and
//! client certificates with a given common name.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::process::scratch_directory;

/// A test certificate authority and the directory its files are written to.
pub struct Pki {
    /// Where the PEM files are.
    pub directory: PathBuf,
    /// The CA certificate (PEM file).
    pub ca_path: PathBuf,
    /// The CA certificate (PEM).
    pub ca_pem: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let directory = scratch_directory(&format!("pki-{name}"));
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("creditpool test CA {name}"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let ca_pem = ca.pem();
        let ca_path = directory.join("ca.pem");
        std::fs::write(&ca_path, &ca_pem).expect("write CA");
        Pki { directory, ca_path, ca_pem, ca }
    }

    /// A certificate for `common_name` (and the SANs 127.0.0.1 and localhost): (cert PEM, key PEM).
    pub fn issue(&self, common_name: &str) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        let certificate = params.signed_by(&key, &self.ca).expect("sign");
        (certificate.pem(), key.serialize_pem())
    }

    /// [`Pki::issue`] written to `<name>.crt` and `<name>.key`: (cert path, key path).
    pub fn issue_files(&self, name: &str, common_name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(common_name);
        let (cert_path, key_path) =
            (self.directory.join(format!("{name}.crt")), self.directory.join(format!("{name}.key")));
        std::fs::write(&cert_path, cert).expect("write certificate");
        std::fs::write(&key_path, key).expect("write key");
        (cert_path, key_path)
    }

    /// A client TLS configuration trusting this CA, with `identity` (cert PEM, key PEM) if given.
    pub fn client(&self, identity: Option<&(String, String)>) -> tonic::transport::ClientTlsConfig {
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .domain_name("localhost");
        match identity {
            Some((cert, key)) => config.identity(tonic::transport::Identity::from_pem(cert, key)),
            None => config,
        }
    }
}
