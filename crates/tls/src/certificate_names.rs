//! [`certificate_names`]: the names a client certificate carries, which the auth file maps to
//! roles.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The names `cert` carries, in the order a name is looked up in the auth file: its URI subject
/// alternative names, then its DNS ones, then its subject's common names. Empty for bytes that
/// are not a certificate. The caller has verified the certificate (these names are only claims
/// until then).
pub fn certificate_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else { return Vec::new() };
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => uris.push(uri.to_string()),
                GeneralName::DNSName(host) => dns.push(host.to_string()),
                _ => {}
            }
        }
    }
    let common = parsed.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_string));
    uris.into_iter().chain(dns).chain(common.collect::<Vec<_>>()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ThrowawayCa;

    #[test]
    fn names_come_uri_then_dns_then_common_name() {
        let ca = ThrowawayCa::new("names CA").unwrap();
        let pem = ca.issue_node(&["db.internal", "127.0.0.1"], Some(4)).unwrap().cert;
        let cert = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(certificate_names(&cert), ["spiffe://raftkv/node/4", "db.internal", "db.internal"]);
        let client = ca.issue_client("billing").unwrap().cert;
        let cert = rustls_pki_types::pem::PemObject::from_pem_slice(client.as_bytes()).unwrap();
        assert_eq!(certificate_names(&cert), ["billing", "billing"]);
        assert!(certificate_names(&CertificateDer::from(vec![1, 2, 3])).is_empty());
    }
}
