//! CertificateSigningRequests (`certificates.k8s.io/v1`, cluster-scoped) in the stand-in:
//! create (with `generateName`), get, list, and what kube-controller-manager does once an
//! approver approved one: a test CA signs the request (client-auth, the requested
//! `expirationSeconds`) into `status.certificate`. Approval is a test hook, or automatic.
//!
//! Deliberately laxer than a real API server: `expirationSeconds` under 600 is accepted (so a
//! test can watch a rotation in seconds), and no authentication decides who may create one.
use std::collections::BTreeMap;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The kube-controller-manager default when a request has no `expirationSeconds` (1 year).
const DEFAULT_SECONDS: i64 = 365 * 24 * 3600;
/// The controller backdates long-lived certificates against clock skew.
const BACKDATE_SECONDS: i64 = 300;
const BACKDATE_FROM_SECONDS: i64 = 8 * 3600;

/// A CSR operation failed; the message is the API server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("{0}")]
    Invalid(String),
    #[error("certificatesigningrequests.certificates.k8s.io \"{0}\" not found")]
    NotFound(String),
    #[error("certificatesigningrequests.certificates.k8s.io \"{0}\" already exists")]
    AlreadyExists(String),
}

impl CsrError {
    pub fn code(&self) -> u16 {
        match self {
            CsrError::Invalid(_) => 422,
            CsrError::NotFound(_) => 404,
            CsrError::AlreadyExists(_) => 409,
        }
    }
}

/// The stored requests and the signer.
pub struct Csrs {
    items: BTreeMap<String, Value>,
    counter: u64,
    pub auto_approve: bool,
    ca: TestCa,
}

struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "multus-rs stand-in client CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
        })
    }
}

impl Csrs {
    pub fn new() -> Self {
        Self {
            items: BTreeMap::new(),
            counter: 0,
            auto_approve: false,
            // Key generation with ring only fails without system randomness.
            ca: TestCa::new().unwrap_or_else(|e| panic!("stand-in CA: {e}")),
        }
    }

    /// The CA that signs issued certificates, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca.pem
    }

    /// Validates and stores a new request as the API server does; returns it as stored.
    pub fn create(&mut self, mut csr: Value) -> Result<Value, CsrError> {
        if csr.pointer("/kind").and_then(Value::as_str) != Some("CertificateSigningRequest") {
            return Err(CsrError::Invalid("not a CertificateSigningRequest".into()));
        }
        request_pem(&csr)?;
        for field in ["signerName", "usages"] {
            if csr.pointer(&format!("/spec/{field}")).is_none() {
                return Err(CsrError::Invalid(format!("spec.{field}: Required value")));
            }
        }
        self.counter += 1;
        let name = match (
            csr.pointer("/metadata/name").and_then(Value::as_str),
            csr.pointer("/metadata/generateName")
                .and_then(Value::as_str),
        ) {
            (Some(n), _) if !n.is_empty() => n.to_owned(),
            (_, Some(prefix)) => format!("{prefix}{:05}", self.counter),
            _ => return Err(CsrError::Invalid("metadata.name: Required value".into())),
        };
        if self.items.contains_key(&name) {
            return Err(CsrError::AlreadyExists(name));
        }
        csr["metadata"]["name"] = json!(name);
        csr["metadata"]["uid"] = json!(format!("csr-uid-{}", self.counter));
        csr["metadata"]["resourceVersion"] = json!(self.counter.to_string());
        csr["metadata"]["creationTimestamp"] = json!(rfc3339(OffsetDateTime::now_utc()));
        csr["status"] = json!({});
        self.items.insert(name.clone(), csr);
        if self.auto_approve {
            self.approve(&name)?;
        }
        self.get(&name)
    }

    pub fn get(&self, name: &str) -> Result<Value, CsrError> {
        self.items
            .get(name)
            .cloned()
            .ok_or_else(|| CsrError::NotFound(name.to_owned()))
    }

    /// Every request, oldest first.
    pub fn list(&self) -> Vec<Value> {
        let mut all: Vec<Value> = self.items.values().cloned().collect();
        all.sort_by_key(|c| {
            c.pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|rv| rv.parse::<u64>().ok())
        });
        all
    }

    /// Approves the request and issues its certificate.
    pub fn approve(&mut self, name: &str) -> Result<(), CsrError> {
        let csr = self.get(name)?;
        let pem = self.sign(&csr)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        self.set_status(
            name,
            json!({
                "conditions": [condition("Approved", "StandInApprove", "approved by the test")],
                "certificate": b64,
            }),
        );
        Ok(())
    }

    /// Denies the request (no certificate).
    pub fn deny(&mut self, name: &str, message: &str) -> Result<(), CsrError> {
        self.get(name)?;
        self.set_status(
            name,
            json!({"conditions": [condition("Denied", "StandInDeny", message)]}),
        );
        Ok(())
    }

    fn set_status(&mut self, name: &str, status: Value) {
        self.counter += 1;
        if let Some(csr) = self.items.get_mut(name) {
            csr["status"] = status;
            csr["metadata"]["resourceVersion"] = json!(self.counter.to_string());
        }
    }

    fn sign(&self, csr: &Value) -> Result<String, CsrError> {
        let invalid = |e: rcgen::Error| CsrError::Invalid(format!("signing: {e}"));
        let mut request =
            CertificateSigningRequestParams::from_pem(&request_pem(csr)?).map_err(invalid)?;
        let seconds = csr
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_SECONDS);
        let now = OffsetDateTime::now_utc();
        let p = &mut request.params;
        p.not_before = if seconds >= BACKDATE_FROM_SECONDS {
            now - time::Duration::seconds(BACKDATE_SECONDS)
        } else {
            now
        };
        p.not_after = now + time::Duration::seconds(seconds);
        p.serial_number = Some(SerialNumber::from(self.counter + 1000));
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok(request.signed_by(&self.ca.issuer).map_err(invalid)?.pem())
    }
}

/// `spec.request` (base64 of a PEM CERTIFICATE REQUEST), decoded.
pub fn request_pem(csr: &Value) -> Result<String, CsrError> {
    let b64 = csr
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .ok_or_else(|| CsrError::Invalid("spec.request: Required value".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| CsrError::Invalid(format!("spec.request: {e}")))?;
    let pem =
        String::from_utf8(bytes).map_err(|_| CsrError::Invalid("spec.request: not PEM".into()))?;
    if !pem.contains("-----BEGIN CERTIFICATE REQUEST-----") {
        return Err(CsrError::Invalid(
            "spec.request: PEM block type must be CERTIFICATE REQUEST".into(),
        ));
    }
    Ok(pem)
}

/// The subject of a stored request's PKCS#10 request: (common name, organizations).
pub fn subject(csr: &Value) -> Result<(String, Vec<String>), CsrError> {
    let request = CertificateSigningRequestParams::from_pem(&request_pem(csr)?)
        .map_err(|e| CsrError::Invalid(format!("spec.request: {e}")))?;
    let mut common_name = String::new();
    let mut organizations = Vec::new();
    for (kind, value) in request.params.distinguished_name.iter() {
        let text = match value {
            DnValue::Utf8String(s) => s.clone(),
            DnValue::PrintableString(s) => s.as_str().to_owned(),
            DnValue::Ia5String(s) => s.as_str().to_owned(),
            other => format!("{other:?}"),
        };
        match kind {
            DnType::CommonName => common_name = text,
            DnType::OrganizationName => organizations.push(text),
            _ => {}
        }
    }
    Ok((common_name, organizations))
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    let now = rfc3339(OffsetDateTime::now_utc());
    json!({"type": kind, "status": "True", "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now})
}

fn rfc3339(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cn: &str) -> (KeyPair, Value) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "csr-"},
            "spec": {"request": b64, "signerName": "kubernetes.io/kube-apiserver-client",
                "usages": ["digital signature", "client auth"], "expirationSeconds": 30}});
        (key, csr)
    }

    #[test]
    fn create_names_and_approve_signs() {
        let mut csrs = Csrs::new();
        let (_, csr) = request("system:multus:n1");
        let stored = csrs.create(csr.clone()).unwrap();
        let name = stored["metadata"]["name"].as_str().unwrap().to_owned();
        assert!(name.starts_with("csr-"));
        assert_eq!(stored["status"], json!({}));
        csrs.approve(&name).unwrap();
        let issued = csrs.get(&name).unwrap();
        assert_eq!(issued["status"]["conditions"][0]["type"], "Approved");
        let pem = base64::engine::general_purpose::STANDARD
            .decode(issued["status"]["certificate"].as_str().unwrap())
            .unwrap();
        assert!(
            String::from_utf8(pem)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        let second = csrs.create(csr).unwrap();
        assert_ne!(second["metadata"]["name"], name.as_str());
        assert_eq!(csrs.list().len(), 2);
    }

    #[test]
    fn invalid_requests_are_refused() {
        let mut csrs = Csrs::new();
        let (_, mut csr) = request("x");
        csr["spec"]["request"] = json!("bm90IHBlbQ==");
        assert_eq!(csrs.create(csr).unwrap_err().code(), 422);
        assert_eq!(csrs.get("nope").unwrap_err().code(), 404);
        let (_, mut named) = request("x");
        named["metadata"] = json!({"name": "fixed"});
        csrs.create(named.clone()).unwrap();
        assert_eq!(csrs.create(named).unwrap_err().code(), 409);
        csrs.deny("fixed", "no").unwrap();
        assert_eq!(
            csrs.get("fixed").unwrap()["status"]["conditions"][0]["type"],
            "Denied"
        );
    }
}
