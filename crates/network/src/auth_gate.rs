//! [`AuthGate`]: who may do what on the client API, from the auth file (`--auth-file`),
//! reloaded when the file changes; and the middleware ([`authorize`]) that enforces it.
//!
//! Every `/v1/` route, `/metrics` and `/ui` need a permission ([`Permission`]); routes that name
//! a key, a prefix or a watch also need it on that key or for every key under that prefix. A
//! transaction is checked key by key by its handler (`check_txn`). `/livez` and `/readyz`
//! stay open (orchestrators probe them without credentials); peer RPC (`/raft/`) is guarded by
//! the peer secret or peer TLS instead ([`ClusterGuard`](crate::ClusterGuard)).
//!
//! A request that a follower forwards to the leader carries the caller's `Authorization` on,
//! and the leader checks it again: a follower's view never widens what a caller may do.

use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use raftkv_types::api::{TxnRequest, TxnRequestOp};
use sha2::{Digest, Sha256};

use crate::api_error::ApiError;
use crate::auth_config::{AuthConfig, Permission};
use crate::authenticator::{Authenticator, Principal};
use crate::leader_proxy::FORWARDED_HEADER;
use crate::network_metrics::NetworkMetrics;
use crate::peer_secret::PeerSecret;
use crate::peer_transport::PeerTransport;
use raftkv_tls::ConnectionInfo;

/// The authentication and permission check of one node. Cheap to clone.
///
/// Without an auth file every request is allowed (the default, as a fresh etcd or Consul
/// without ACLs, but stated at startup). With one, credentials are checked on every request; a
/// new version of the file takes effect for the requests that follow its reload, and a file that
/// does not parse leaves the previous version in force (logged, and counted in
/// `raftkv_config_reloads_total{file="auth",result="failed"}`).
#[derive(Clone)]
pub struct AuthGate {
    inner: Arc<Inner>,
}

struct Inner {
    file: Option<PathBuf>,
    current: ArcSwapOption<Authenticator>,
    /// SHA-256 of the file content last tried, loaded or not.
    last_seen: Mutex<Option<[u8; 32]>>,
    peer: Option<PeerSecret>,
    transport: PeerTransport,
    metrics: NetworkMetrics,
}

impl AuthGate {
    /// A gate that lets every request through.
    pub fn open() -> AuthGate {
        AuthGate::with(None, None, PeerTransport::plain(), NetworkMetrics::default())
    }

    fn with(
        file: Option<PathBuf>,
        peer: Option<PeerSecret>,
        transport: PeerTransport,
        metrics: NetworkMetrics,
    ) -> AuthGate {
        AuthGate {
            inner: Arc::new(Inner {
                file,
                current: ArcSwapOption::empty(),
                last_seen: Mutex::new(None),
                peer,
                transport,
                metrics,
            }),
        }
    }

    /// A gate that checks requests against the auth file `file` (an error when it cannot be read
    /// or does not parse). A member may do everything: a request that presents `peer` (the
    /// cluster's peer secret), or, with peer TLS on `transport`, one that comes with a member
    /// certificate and no credentials and was not forwarded (a forwarded request is judged by
    /// its caller's credentials alone).
    pub fn from_file(
        file: &FsPath,
        peer: Option<PeerSecret>,
        transport: PeerTransport,
        metrics: NetworkMetrics,
    ) -> Result<AuthGate, String> {
        let gate = AuthGate::with(Some(file.to_path_buf()), peer, transport, metrics);
        let text = std::fs::read(file).map_err(|e| format!("read auth file {}: {e}", file.display()))?;
        gate.load(&text).map_err(|e| format!("auth file {}: {e}", file.display()))?;
        Ok(gate)
    }

    /// Whether requests are checked.
    pub fn enabled(&self) -> bool {
        self.inner.current.load().is_some()
    }

    fn load(&self, text: &[u8]) -> Result<(), String> {
        let digest: [u8; 32] = Sha256::digest(text).into();
        *self.inner.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
        let text = std::str::from_utf8(text).map_err(|_| "the file is not UTF-8".to_string())?;
        let config = AuthConfig::parse(text)?;
        self.inner.current.store(Some(Arc::new(Authenticator::new(config))));
        Ok(())
    }

    /// Loads the auth file again if its content changed since it was last read. `Ok(true)`: a
    /// new version is in force; `Err`: the new content was refused and the previous version
    /// stays (each distinct broken content is reported once).
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let Some(file) = &self.inner.file else { return Ok(false) };
        let text = std::fs::read(file).map_err(|e| format!("read auth file {}: {e}", file.display()))?;
        let digest: [u8; 32] = Sha256::digest(&text).into();
        if *self.inner.last_seen.lock().unwrap_or_else(|e| e.into_inner()) == Some(digest) {
            return Ok(false);
        }
        let loaded = self.load(&text).map_err(|e| format!("auth file {}: {e}", file.display()));
        let result = if loaded.is_ok() { "ok" } else { "failed" };
        self.inner
            .metrics
            .config_reloads
            .get_or_create(&crate::network_metrics::ReloadLabels::of("auth", result))
            .inc();
        loaded.map(|()| true)
    }

    /// The principal of a request with these headers, or why it is refused (401). `None`: no
    /// auth file, everything is allowed.
    fn principal(
        &self,
        headers: &axum::http::HeaderMap,
        connection: Option<&ConnectionInfo>,
    ) -> Result<Option<Principal>, ApiError> {
        let Some(authenticator) = self.inner.current.load_full() else { return Ok(None) };
        if self.inner.peer.as_ref().is_some_and(|p| p.presented_in(headers)) {
            return Ok(Some(Principal::member()));
        }
        if !headers.contains_key(header::AUTHORIZATION)
            && !headers.contains_key(FORWARDED_HEADER)
            && matches!(self.inner.transport.member_of(connection), Ok(Some(_)))
        {
            return Ok(Some(Principal::member()));
        }
        let authorization = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
            None => None,
            Some(Ok(value)) => Some(value),
            Some(Err(_)) => return Err(ApiError::Unauthenticated("the Authorization header is not ASCII".into())),
        };
        authenticator.authenticate(authorization).map(Some).map_err(|e| ApiError::Unauthenticated(e.0))
    }
}

impl std::fmt::Debug for AuthGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthGate").field("file", &self.inner.file).field("enabled", &self.enabled()).finish()
    }
}

/// What a route needs.
enum Need {
    Nothing,
    Any(Permission),
    Key(Permission, String),
    Prefix(Permission, String),
}

/// The permission the route `pattern` needs for `method`, with the key or prefix it names.
fn need_of(pattern: &str, method: &Method, key: Option<String>, query: &[(String, String)]) -> Need {
    use Permission::*;
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let write = |p: Permission| if method == Method::GET { Need::Any(Status) } else { Need::Any(p) };
    match pattern {
        "/v1/kv/{key}" | "/v1/kv/{key}/cas" => {
            let permission = if method == Method::GET { KvRead } else { KvWrite };
            key.map_or(Need::Nothing, |k| Need::Key(permission, k))
        }
        "/v1/kv" => Need::Prefix(KvRead, param("prefix").unwrap_or_default()),
        "/v1/watch" => match param("key") {
            Some(key) => Need::Key(KvRead, key),
            None => Need::Prefix(KvRead, param("prefix").unwrap_or_default()),
        },
        // Checked key by key by the handler once the body is read.
        "/v1/txn" => Need::Any(KvWrite),
        // Revoking a lease deletes its keys, wherever they are.
        "/v1/leases/{id}" if method == Method::DELETE => Need::Prefix(KvWrite, String::new()),
        "/v1/leases" | "/v1/leases/{id}" | "/v1/leases/{id}/keepalive" => {
            Need::Any(if method == Method::GET { KvRead } else { KvWrite })
        }
        "/v1/sessions" => Need::Any(KvWrite),
        "/v1/status" | "/v1/cluster/health" | "/v1/cluster/events" | "/ui" => Need::Any(Status),
        "/metrics" => Need::Any(Metrics),
        "/v1/cluster/members"
        | "/v1/cluster/members/{id}"
        | "/v1/cluster/members/{id}/promote"
        | "/v1/cluster/members/{id}/replace"
        | "/v1/cluster/members/{id}/standby" => write(AdminMembers),
        "/v1/cluster/leader"
        | "/v1/cluster/autopilot"
        | "/v1/cluster/autopilot/pause"
        | "/v1/cluster/replication"
        | "/v1/cluster/leaving" => write(AdminLeader),
        "/v1/admin/backup" => Need::Any(AdminBackup),
        _ => Need::Nothing,
    }
}

fn denied(principal: &Principal, permission: Permission, what: &str) -> ApiError {
    ApiError::PermissionDenied(format!("{} may not {permission}{what}", principal.describe()))
}

fn check(principal: &Principal, need: &Need) -> Result<(), ApiError> {
    match need {
        Need::Nothing => Ok(()),
        Need::Any(p) if principal.allows(*p) => Ok(()),
        Need::Any(p) => Err(denied(principal, *p, "")),
        Need::Key(p, key) if principal.allows_key(*p, key) => Ok(()),
        Need::Key(p, key) => Err(denied(principal, *p, &format!(" on key {key:?}"))),
        Need::Prefix(p, prefix) if principal.allows_prefix(*p, prefix) => Ok(()),
        Need::Prefix(p, prefix) if prefix.is_empty() => Err(denied(principal, *p, " on every key")),
        Need::Prefix(p, prefix) => Err(denied(principal, *p, &format!(" on every key under {prefix:?}"))),
    }
}

/// Checks a transaction against the caller's permissions: `kv:read` on the keys it compares and
/// gets, `kv:write` on those it puts and deletes (and on every key of a deleted prefix).
/// `principal` is what [`authorize`] left in the request (`None`: no auth file).
pub(crate) fn check_txn(principal: Option<&Principal>, txn: &TxnRequest) -> Result<(), ApiError> {
    let Some(principal) = principal else { return Ok(()) };
    for compare in &txn.compare {
        check(principal, &Need::Key(Permission::KvRead, compare.key.clone()))?;
    }
    for op in txn.success.iter().chain(&txn.failure) {
        let need = match op {
            TxnRequestOp::Put(put) => Need::Key(Permission::KvWrite, put.key.clone()),
            TxnRequestOp::Delete(k) => Need::Key(Permission::KvWrite, k.key.clone()),
            TxnRequestOp::DeletePrefix(p) => Need::Prefix(Permission::KvWrite, p.prefix.clone()),
            TxnRequestOp::Get(k) => Need::Key(Permission::KvRead, k.key.clone()),
        };
        check(principal, &need)?;
    }
    Ok(())
}

/// Axum middleware: authenticates the request against `gate` (401 with `WWW-Authenticate` when
/// credentials are missing or wrong and anonymous requests may not do this), checks the route's
/// permission (403 `permission_denied`), and leaves the [`Principal`] in the request's
/// extensions for handlers that check further.
pub async fn authorize(State(gate): State<AuthGate>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path.starts_with("/raft/") || path == "/livez" || path == "/readyz" {
        return next.run(request).await;
    }
    let connection = request.extensions().get::<ConnectInfo<ConnectionInfo>>().map(|c| &c.0);
    let principal = match gate.principal(request.headers(), connection) {
        Ok(Some(principal)) => principal,
        Ok(None) => return next.run(request).await,
        Err(refusal) => return refusal.into_response(),
    };
    let (mut parts, body) = request.into_parts();
    let pattern = parts.extensions.get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let key = match Path::<std::collections::HashMap<String, String>>::from_request_parts(&mut parts, &()).await {
        Ok(Path(mut params)) => params.remove("key"),
        Err(_) => None,
    };
    let query = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
    let need = need_of(&pattern, &parts.method, key, &query);
    if let Err(refusal) = check(&principal, &need) {
        // Anonymous callers are told to authenticate rather than that they may not.
        return if principal.name.is_none() {
            ApiError::Unauthenticated(format!("{refusal}; present credentials (Bearer token or Basic)")).into_response()
        } else {
            refusal.into_response()
        };
    }
    parts.extensions.insert(principal);
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_on(prefix: &str) -> Principal {
        let (token, sha256) = crate::authenticator::new_token();
        let file = format!(
            r#"
            [[token]]
            name = "t"
            sha256 = "{sha256}"
            roles = ["r"]
            [[role]]
            name = "r"
            permissions = ["kv:read"]
            prefixes = ["{prefix}"]
            "#
        );
        let auth = Authenticator::new(AuthConfig::parse(&file).unwrap());
        auth.authenticate(Some(&format!("Bearer {token}"))).unwrap()
    }

    #[test]
    fn routes_need_their_permission_on_their_key_or_prefix() {
        let reader = reader_on("app/");
        let get = need_of("/v1/kv/{key}", &Method::GET, Some("app/x".into()), &[]);
        assert!(check(&reader, &get).is_ok());
        let put = need_of("/v1/kv/{key}", &Method::PUT, Some("app/x".into()), &[]);
        assert!(check(&reader, &put).unwrap_err().to_string().contains("kv:write on key \"app/x\""));
        let other = need_of("/v1/kv/{key}", &Method::GET, Some("other".into()), &[]);
        assert!(check(&reader, &other).is_err());
        let scan_all = need_of("/v1/kv", &Method::GET, None, &[]);
        assert!(check(&reader, &scan_all).unwrap_err().to_string().contains("every key"));
        let scan_app = need_of("/v1/kv", &Method::GET, None, &[("prefix".into(), "app/a".into())]);
        assert!(check(&reader, &scan_app).is_ok());
        let watch_key = need_of("/v1/watch", &Method::GET, None, &[("key".into(), "app/k".into())]);
        assert!(check(&reader, &watch_key).is_ok());
        let members = need_of("/v1/cluster/members", &Method::POST, None, &[]);
        assert!(check(&reader, &members).unwrap_err().to_string().contains("admin:members"));
        assert!(check(&Principal::member(), &members).is_ok());
    }
}
