//! [`ThrowawayCa`]: a certificate authority made on the spot, for the example cluster
//! (`raftkv cluster --tls`) and for tests. Its key lives in memory (and in the files it is
//! asked to write); nothing it makes is meant for production.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

use crate::error::TlsError;

/// The URI subject alternative name that names member `id` in a peer certificate.
pub fn member_uri(id: u64) -> String {
    format!("{}{id}", crate::peer_tls::MEMBER_URI_PREFIX)
}

/// The files [`ThrowawayCa::write_cluster`] wrote.
#[derive(Debug, Clone)]
pub struct ThrowawayCluster {
    dir: PathBuf,
}

impl ThrowawayCluster {
    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Member `id`'s peer files.
    pub fn member(&self, id: u64) -> crate::PeerTlsFiles {
        crate::PeerTlsFiles {
            ca: self.ca(),
            cert: self.dir.join(format!("member-{id}.crt")),
            key: self.dir.join(format!("member-{id}.key")),
        }
    }

    /// The client's files: the CA and the client certificate.
    pub fn client(&self) -> crate::ClientTlsFiles {
        crate::ClientTlsFiles {
            ca: Some(self.ca()),
            cert: Some(self.dir.join("client.crt")),
            key: Some(self.dir.join("client.key")),
        }
    }
}

/// A certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct IssuedPem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

impl IssuedPem {
    /// Writes `{name}.crt` and `{name}.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), TlsError> {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        write(&cert, &self.cert)?;
        write(&key, &self.key)?;
        Ok((cert, key))
    }
}

/// A CA that issues server, client and member certificates.
pub struct ThrowawayCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl ThrowawayCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<ThrowawayCa, TlsError> {
        let key = KeyPair::generate().map_err(generation)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generation)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(generation)?;
        Ok(ThrowawayCa { issuer: Issuer::new(params, key), cert_pem: cert.pem() })
    }

    /// The CA's certificate (PEM): what clients and servers trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> Result<(), TlsError> {
        write(path, &self.cert_pem)
    }

    /// A certificate for a server reached as `hosts` (DNS names or IP addresses), usable as a
    /// client certificate too (peers are both); with `member`, it also names that member
    /// ([`member_uri`]).
    pub fn issue_node(&self, hosts: &[&str], member: Option<u64>) -> Result<IssuedPem, TlsError> {
        let mut sans: Vec<SanType> = hosts.iter().map(|h| san(h)).collect::<Result<_, _>>()?;
        if let Some(id) = member {
            sans.push(SanType::URI(member_uri(id).try_into().map_err(generation)?));
        }
        let name = hosts.first().copied().unwrap_or("raftkv");
        self.issue(name, sans, vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// Writes a whole throwaway cluster's files into `dir`: `ca.crt`; for each member `(id,
    /// hosts)`, `member-<id>.crt` and `.key`, for 127.0.0.1, localhost and `hosts`, naming member
    /// `id`; and `client.crt` and `.key`, a client certificate for `client_name`.
    pub fn write_cluster(
        &self,
        dir: &Path,
        members: &[(u64, Vec<String>)],
        client_name: &str,
    ) -> Result<ThrowawayCluster, TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Read { path: dir.to_path_buf(), source })?;
        let cluster = ThrowawayCluster { dir: dir.to_path_buf() };
        self.write_cert(&cluster.ca())?;
        for (id, hosts) in members {
            let mut names = vec!["127.0.0.1", "localhost"];
            names.extend(hosts.iter().map(String::as_str).filter(|h| *h != "127.0.0.1" && *h != "localhost"));
            self.issue_node(&names, Some(*id))?.write(dir, &format!("member-{id}"))?;
        }
        self.issue_client(client_name)?.write(dir, "client")?;
        Ok(cluster)
    }

    /// A client certificate for `name` (its common name and a DNS name).
    pub fn issue_client(&self, name: &str) -> Result<IssuedPem, TlsError> {
        let sans = vec![san(name)?];
        self.issue(name, sans, vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn issue(
        &self,
        name: &str,
        sans: Vec<SanType>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<IssuedPem, TlsError> {
        let key = KeyPair::generate().map_err(generation)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generation)?;
        params.subject_alt_names = sans;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let cert = params.signed_by(&key, &self.issuer).map_err(generation)?;
        Ok(IssuedPem { cert: cert.pem(), key: key.serialize_pem() })
    }
}

fn san(host: &str) -> Result<SanType, TlsError> {
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(host.try_into().map_err(generation)?),
    })
}

fn generation(error: rcgen::Error) -> TlsError {
    TlsError::Rejected { what: "certificate generation".into(), reason: error.to_string() }
}

fn write(path: &Path, pem: &str) -> Result<(), TlsError> {
    std::fs::write(path, pem).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}
