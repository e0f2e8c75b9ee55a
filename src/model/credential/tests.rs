use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

const CA: &str = include_str!("../../../testdata/credentials/ca.pem");
const CERT: &str = include_str!("../../../testdata/credentials/server.pem");
const KEY: &str = include_str!("../../../testdata/credentials/server-key.pem");
const OTHER_KEY: &str = include_str!("../../../testdata/credentials/other-key.pem");

fn secret(name: &str, ty: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("gw".into()),
            ..Default::default()
        },
        type_: Some(ty.into()),
        data: Some(
            data.iter()
                .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn tls(name: &str, data: &[(&str, &str)]) -> Secret {
    secret(name, "kubernetes.io/tls", data)
}

/// The credentials of `secrets`, all present and admitted.
fn built(secrets: &[Secret]) -> Credentials {
    let present = secrets.iter().map(|secret| {
        (
            secret.metadata.namespace.as_deref().unwrap(),
            secret.metadata.name.as_deref().unwrap(),
        )
    });
    credentials(present, secrets)
}

fn only(credentials: &Credentials, name: &str) -> Credential {
    assert_eq!(credentials.len(), 1, "{credentials:?}");
    credentials[&("gw".to_string(), name.to_string())].clone()
}

fn error_field(secret: &Secret) -> String {
    let name = secret.metadata.name.as_deref().unwrap();
    validate_secret(name, secret).unwrap_err().field
}

#[test]
fn a_tls_secret_gives_its_chain_key_and_ca() {
    let secret = tls(
        "cred",
        &[(TLS_CERTIFICATE, CERT), (TLS_KEY, KEY), (TLS_CA, CA)],
    );
    assert_eq!(validate_secret("cred", &secret), Ok(()));
    let credential = only(&built(&[secret]), "cred");
    assert_eq!(credential.certificate_chain, CERT);
    assert_eq!(credential.private_key, KEY);
    assert_eq!(credential.ca_certificate.as_deref(), Some(CA));
}

#[test]
fn a_generic_secret_is_read_first_as_istiod_does() {
    // Both forms in one Secret: `cert`/`key` win; `cacert` wins over `ca.crt`.
    let secret = secret(
        "cred",
        "Opaque",
        &[
            (GENERIC_CERTIFICATE, CERT),
            (GENERIC_KEY, KEY),
            (GENERIC_CA, CA),
            (TLS_CERTIFICATE, "junk"),
            (TLS_CA, "junk"),
        ],
    );
    let credential = only(&built(&[secret]), "cred");
    assert_eq!(credential.private_key, KEY);
    assert_eq!(credential.ca_certificate.as_deref(), Some(CA));
}

#[test]
fn string_data_is_read_over_data() {
    let mut secret = tls("cred", &[(TLS_CERTIFICATE, CERT), (TLS_KEY, OTHER_KEY)]);
    secret.string_data = Some([(TLS_KEY.to_string(), KEY.to_string())].into());
    let credential = only(&built(&[secret]), "cred");
    assert_eq!(credential.private_key, KEY);
    assert_eq!(credential.ca_certificate, None);
}

#[test]
fn the_cacert_companion_gives_the_ca() {
    let own = tls(
        "cred",
        &[(TLS_CERTIFICATE, CERT), (TLS_KEY, KEY), (TLS_CA, "x")],
    );
    assert_eq!(error_field(&own), "data.ca.crt");
    let main = tls("cred", &[(TLS_CERTIFICATE, CERT), (TLS_KEY, KEY)]);
    let companion = secret("cred-cacert", "Opaque", &[(GENERIC_CA, CA)]);
    let credential = only(&built(&[main, companion]), "cred");
    assert_eq!(credential.ca_certificate.as_deref(), Some(CA));

    // A companion that exists but was not admitted replaces the CA with none.
    let with_own_ca = tls(
        "cred",
        &[(TLS_CERTIFICATE, CERT), (TLS_KEY, KEY), (TLS_CA, CA)],
    );
    let present = [("gw", "cred"), ("gw", "cred-cacert")];
    let built = credentials(present, std::slice::from_ref(&with_own_ca));
    assert_eq!(only(&built, "cred").ca_certificate, None);
}

#[test]
fn malformed_secrets_name_the_field_at_fault() {
    let missing_key = tls("cred", &[(TLS_CERTIFICATE, CERT)]);
    assert_eq!(error_field(&missing_key), "data.tls.key");
    let empty_key = tls("cred", &[(TLS_CERTIFICATE, CERT), (TLS_KEY, "")]);
    assert_eq!(error_field(&empty_key), "data.tls.key");
    let not_pem = tls("cred", &[(TLS_CERTIFICATE, "hello"), (TLS_KEY, KEY)]);
    assert_eq!(error_field(&not_pem), "data.tls.crt");
    let bad_der = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
    let garbage = tls("cred", &[(TLS_CERTIFICATE, bad_der), (TLS_KEY, KEY)]);
    assert_eq!(error_field(&garbage), "data.tls.crt");
    let key_not_pem = tls("cred", &[(TLS_CERTIFICATE, CERT), (TLS_KEY, CERT)]);
    assert_eq!(error_field(&key_not_pem), "data.tls.key");
    let mismatch = tls("cred", &[(TLS_CERTIFICATE, CERT), (TLS_KEY, OTHER_KEY)]);
    let error = validate_secret("cred", &mismatch).unwrap_err();
    assert_eq!(error.field, "data.tls.key");
    assert!(
        error.message.contains("does not belong"),
        "{}",
        error.message
    );
    let generic = secret(
        "cred",
        "Opaque",
        &[(GENERIC_CERTIFICATE, CERT), (GENERIC_KEY, "")],
    );
    assert_eq!(error_field(&generic), "data.key");
    // None of them gives a credential.
    assert!(built(&[missing_key, not_pem, mismatch]).is_empty());
}

#[test]
fn secrets_that_are_no_credentials_are_left_alone() {
    let api_key = secret("token", "Opaque", &[(GENERIC_KEY, "s3cr3t")]);
    let ca_only = secret("bundle", "Opaque", &[(TLS_CA, "not even PEM")]);
    let account = secret(
        "sa",
        "kubernetes.io/service-account-token",
        &[(TLS_CA, "x"), (TLS_CERTIFICATE, "x")],
    );
    for secret in [&api_key, &ca_only, &account] {
        let name = secret.metadata.name.as_deref().unwrap();
        assert_eq!(validate_secret(name, secret), Ok(()), "{name}");
    }
    assert!(built(&[api_key, ca_only, account]).is_empty());
}

#[test]
fn debug_output_holds_no_key() {
    let secret = tls("cred", &[(TLS_CERTIFICATE, CERT), (TLS_KEY, KEY)]);
    let credentials = built(&[secret]);
    let printed = format!("{credentials:?}");
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    assert!(printed.contains("<redacted>"));
}

#[test]
fn an_invalid_secret_does_not_fall_back_to_its_last_good_version() {
    use crate::diagnostic::Origin;
    use crate::inputs::{Entry, Inputs, Kind, Object, ObjectKey};
    use crate::model::{LastGood, build};

    let inputs = |secret: Secret| {
        let mut inputs = Inputs::default();
        let origin = Origin::File {
            path: "secrets.yaml".into(),
            line: 1,
        };
        let key = ObjectKey::new(Kind::Secret, "gw", "cred");
        let object = Ok(Object::Secret(Box::new(secret)));
        inputs.insert(key, Entry { origin, object });
        inputs
    };
    let good = build(
        &inputs(tls("cred", &[(TLS_CERTIFICATE, CERT), (TLS_KEY, KEY)])),
        &LastGood::default(),
    );
    assert!(good.model.credential("gw", "cred").is_some());
    let replaced = tls("cred", &[(TLS_CERTIFICATE, CERT), (TLS_KEY, OTHER_KEY)]);
    let bad = build(&inputs(replaced), &good.last_good);
    assert_eq!(bad.model.credential("gw", "cred"), None);
    let errors: Vec<String> = bad.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("secrets.yaml:1: Secret gw/cred: data.tls.key: does not belong"),
        "{errors:?}"
    );
    assert!(errors[0].ends_with("; not applied"), "{errors:?}");
}
