//! One certificate request: a fresh ECDSA P-256 key (as kubelet's), a PKCS#10 request for
//! `system:multus:<node>` / `system:multus`, a `certificates.k8s.io/v1` CertificateSigningRequest
//! for the kube-apiserver-client signer, then polling (with back-off) until a separate approver
//! has approved it and the signer has issued the certificate, as client-go's
//! `csr.WaitForCertificate` does with a watch.
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};
use rcgen::PublicKeyData;

use super::identity::Identity;
use super::{CertSettings, CertificateError, ORGANIZATION, SIGNER_NAME, USAGES};

/// First and last pause between two looks at the request.
const POLL_FIRST: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(5);

/// Requests a certificate with `client`'s credentials and waits up to `settings.issue_timeout`.
pub async fn request(
    client: &Client,
    settings: &CertSettings,
) -> Result<Identity, CertificateError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(CertificateError::GenerateKey)?;
    let request_pem = certificate_request(&key, &settings.common_name())?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api
        .create(
            &PostParams::default(),
            &csr_object(request_pem, settings.duration),
        )
        .await
        .map_err(CertificateError::CreateCsr)?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(csr = %name, signer = SIGNER_NAME, "certificate signing request created; waiting for approval");
    let issued = tokio::time::timeout(settings.issue_timeout, wait_issued(&api, &name))
        .await
        .map_err(|_| CertificateError::NotIssued {
            name: name.clone(),
            waited: settings.issue_timeout,
        })??;
    let identity =
        Identity::from_pem(&format!("{issued}{}", key.serialize_pem())).map_err(|source| {
            CertificateError::InvalidIssued {
                name: name.clone(),
                reason: source.to_string(),
            }
        })?;
    check_issued(&identity, &key, settings, &name)?;
    Ok(identity)
}

/// The PKCS#10 request, PEM: subject only, no extensions (the CSR object carries the usages).
pub fn certificate_request(
    key: &rcgen::KeyPair,
    common_name: &str,
) -> Result<String, CertificateError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, ORGANIZATION);
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(CertificateError::GenerateKey)
}

fn csr_object(request_pem: String, duration: Duration) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            // client-go's name: the API server completes it.
            generate_name: Some("csr-".into()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request_pem.into_bytes()),
            signer_name: SIGNER_NAME.into(),
            usages: Some(USAGES.iter().map(|u| (*u).to_owned()).collect()),
            expiration_seconds: Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    }
}

/// Polls until the certificate is there (PEM) or the request was denied or failed.
async fn wait_issued(
    api: &Api<CertificateSigningRequest>,
    name: &str,
) -> Result<String, CertificateError> {
    let mut pause = POLL_FIRST;
    loop {
        match api.get(name).await {
            Ok(csr) => {
                if let Some(pem) = outcome(&csr, name)? {
                    return Ok(pem);
                }
            }
            // The wait is bounded by the caller; a transient API error only costs a poll.
            Err(error) => {
                tracing::warn!(csr = name, error = %error, "reading the certificate signing request failed; retrying")
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// `Some(pem)` once issued, `None` while pending, an error once denied or failed.
fn outcome(
    csr: &CertificateSigningRequest,
    name: &str,
) -> Result<Option<String>, CertificateError> {
    let Some(status) = &csr.status else {
        return Ok(None);
    };
    for condition in status.conditions.iter().flatten() {
        if (condition.type_ == "Denied" || condition.type_ == "Failed")
            && condition.status != "False"
        {
            return Err(CertificateError::Refused {
                name: name.to_owned(),
                condition: condition.type_.clone(),
                reason: condition.reason.clone().unwrap_or_default(),
                message: condition.message.clone().unwrap_or_default(),
            });
        }
    }
    match &status.certificate {
        Some(ByteString(bytes)) if !bytes.is_empty() => String::from_utf8(bytes.clone())
            .map(Some)
            .map_err(|_| CertificateError::InvalidIssued {
                name: name.to_owned(),
                reason: "not UTF-8 PEM".into(),
            }),
        _ => Ok(None),
    }
}

/// The signer must have certified our key, for our name.
fn check_issued(
    identity: &Identity,
    key: &rcgen::KeyPair,
    settings: &CertSettings,
    name: &str,
) -> Result<(), CertificateError> {
    let invalid = |reason: String| CertificateError::InvalidIssued {
        name: name.to_owned(),
        reason,
    };
    if identity.public_key_der != key.subject_public_key_info() {
        return Err(invalid(
            "the certificate is not for the requested key".into(),
        ));
    }
    if identity.common_name != settings.common_name() {
        return Err(invalid(format!(
            "issued for {:?}, not {:?}",
            identity.common_name,
            settings.common_name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };

    use super::*;

    #[test]
    fn request_carries_the_upstream_subject() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = certificate_request(&key, "system:multus:node-a").unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|d: rustls_pki_types::CertificateSigningRequestDer<'_>| d.as_ref().to_vec())
            .unwrap();
        use x509_parser::prelude::FromDer;
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        let subject = req.certification_request_info.subject.to_string();
        assert_eq!(subject, "CN=system:multus:node-a, O=system:multus");
        assert_eq!(
            req.certification_request_info.subject_pki.raw,
            key.subject_public_key_info()
        );
    }

    #[test]
    fn csr_object_has_signer_usages_and_expiration() {
        let csr = csr_object("PEM".into(), Duration::from_secs(600));
        assert_eq!(csr.metadata.generate_name.as_deref(), Some("csr-"));
        assert_eq!(csr.spec.signer_name, "kubernetes.io/kube-apiserver-client");
        assert_eq!(
            csr.spec.usages.unwrap(),
            ["digital signature", "client auth"]
        );
        assert_eq!(csr.spec.expiration_seconds, Some(600));
    }

    fn with_status(conditions: &[(&str, &str)], cert: &[u8]) -> CertificateSigningRequest {
        let mut csr = csr_object(String::new(), Duration::from_secs(600));
        csr.status = Some(CertificateSigningRequestStatus {
            certificate: Some(ByteString(cert.to_vec())),
            conditions: Some(
                conditions
                    .iter()
                    .map(|(t, s)| CertificateSigningRequestCondition {
                        type_: (*t).into(),
                        status: (*s).into(),
                        reason: Some("R".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        });
        csr
    }

    #[test]
    fn outcome_follows_conditions_and_certificate() {
        let pending = csr_object(String::new(), Duration::from_secs(600));
        assert_eq!(outcome(&pending, "c").unwrap(), None);
        assert_eq!(
            outcome(&with_status(&[("Approved", "True")], b""), "c").unwrap(),
            None
        );
        let issued = with_status(&[("Approved", "True")], b"PEM");
        assert_eq!(outcome(&issued, "c").unwrap().as_deref(), Some("PEM"));
        for refused in ["Denied", "Failed"] {
            let e = outcome(&with_status(&[(refused, "True")], b""), "c").unwrap_err();
            assert!(
                matches!(e, CertificateError::Refused { ref condition, .. } if condition == refused),
                "{e}"
            );
        }
        assert_eq!(
            outcome(&with_status(&[("Denied", "False")], b""), "c").unwrap(),
            None
        );
    }
}
