//! Certificates (a CA, serving and client certificates) and the kubeconfigs that embed them.

use std::path::Path;
use std::{fs, io};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

pub(super) struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub(super) pem: String,
}

impl Ca {
    pub(super) fn new() -> Ca {
        let key = KeyPair::generate().expect("generating the CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("pipecat-operator-test-ca", &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).expect("self-signing the CA").pem();
        Ca { params, key, pem }
    }

    /// Signs `params` for a fresh key; returns (certificate PEM, PKCS#8 key PEM).
    fn issue(&self, params: &CertificateParams) -> (String, String) {
        let key = KeyPair::generate().expect("generating a key");
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .expect("signing a certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A loopback serving certificate (also valid for the in-cluster apiserver names).
    pub(super) fn serving_cert(&self, common_name: &str) -> (String, String) {
        let sans = [
            "127.0.0.1",
            "10.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ];
        let mut params = CertificateParams::new(sans.map(String::from).to_vec())
            .expect("serving certificate SANs");
        params.distinguished_name = dn(common_name, &[]);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(&params)
    }

    pub(super) fn client_cert(&self, user: &str, groups: &[&str]) -> (String, String) {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(user, groups);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&params)
    }
}

/// CN=`common_name`, O=each group (Kubernetes reads groups from the Organization attributes).
/// rcgen keeps one value per attribute type, so the second group goes in as an attribute of the
/// same OID (2.5.4.10) spelled as a custom type.
fn dn(common_name: &str, groups: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (i, group) in groups.iter().enumerate() {
        let ty = match i {
            0 => DnType::OrganizationName,
            1 => DnType::CustomDnType(vec![2, 5, 4, 10]),
            _ => panic!("at most two groups per certificate"),
        };
        dn.push(ty, *group);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

pub(super) fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> io::Result<()> {
    // JSON strings are valid YAML scalars.
    let q = |s: &str| serde_json::to_string(s).expect("JSON string");
    let text = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: envtest\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  \
           user:\n    \
             client-certificate-data: {cert}\n    \
             client-key-data: {key}\n\
         contexts:\n\
         - name: envtest\n  \
           context:\n    \
             cluster: envtest\n    \
             user: {user}\n    \
             namespace: default\n\
         current-context: envtest\n",
        server = q(server),
        ca = base64(ca_pem.as_bytes()),
        user = q(user),
        cert = base64(cert_pem.as_bytes()),
        key = base64(key_pem.as_bytes()),
    );
    fs::write(path, text)
}

/// Standard base64 with padding (kubeconfig data and Secret values).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
