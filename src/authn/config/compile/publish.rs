//! Published entries: `providers.*.payload_in_metadata`, `header_in_metadata`,
//! `normalize_payload_in_metadata`, and the top-level extension `outcome_in_metadata`
//! ([`crate::authn::publish`]).

use super::{join, Result};
use crate::authn::config::error::ConfigError;
use crate::authn::config::raw;
use crate::authn::policy::Provider;
use crate::authn::publish::{valid_name, ProviderPublish, MAX_NAME_LEN};

/// A provider's entries. An empty string is the proto default of jwt_authn's fields: unset.
pub(super) fn compile_provider_publish(
    p: &raw::JwtProvider,
    path: &str,
) -> Result<ProviderPublish> {
    let payload = entry_name(
        p.payload_in_metadata.as_deref(),
        path,
        "payload_in_metadata",
    )?;
    let header = entry_name(p.header_in_metadata.as_deref(), path, "header_in_metadata")?;
    if let (Some(a), Some(b)) = (&payload, &header) {
        if a == b {
            return Err(ConfigError::new(
                join(path, "header_in_metadata"),
                format!("{b:?} is also this provider's payload_in_metadata: use another name"),
            ));
        }
    }
    let mut space_delimited_claims = Vec::new();
    if let Some(n) = &p.normalize_payload_in_metadata {
        let npath = join(path, "normalize_payload_in_metadata");
        if payload.is_none() && !n.space_delimited_claims.is_empty() {
            return Err(ConfigError::new(
                npath,
                "has no effect without payload_in_metadata",
            ));
        }
        for (i, claim) in n.space_delimited_claims.iter().enumerate() {
            if claim.is_empty() {
                return Err(ConfigError::new(
                    format!("{npath}.space_delimited_claims[{i}]"),
                    "must not be empty",
                ));
            }
        }
        space_delimited_claims = n.space_delimited_claims.clone();
    }
    Ok(ProviderPublish {
        payload,
        header,
        space_delimited_claims,
    })
}

/// The top-level `outcome_in_metadata`: a name no provider publishes its payload or header
/// under (the outcome would overwrite it). Unlike jwt_authn's fields, an empty string is an
/// error: the field is ours and has no proto default to dump.
pub(super) fn compile_outcome(
    value: Option<&str>,
    providers: &[Provider],
) -> Result<Option<String>> {
    let Some(name) = value else {
        return Ok(None);
    };
    const FIELD: &str = "outcome_in_metadata";
    if name.is_empty() {
        return Err(ConfigError::new(
            FIELD,
            "must not be empty: leave it out to publish no outcome",
        ));
    }
    check_name(name, FIELD)?;
    for p in providers {
        for (field, used) in [
            ("payload_in_metadata", &p.publish.payload),
            ("header_in_metadata", &p.publish.header),
        ] {
            if used.as_deref() == Some(name) {
                return Err(ConfigError::new(
                    FIELD,
                    format!(
                        "{name:?} is also providers.{}.{field}: use another name",
                        p.name
                    ),
                ));
            }
        }
    }
    Ok(Some(name.to_owned()))
}

fn entry_name(value: Option<&str>, path: &str, field: &str) -> Result<Option<String>> {
    match value {
        None | Some("") => Ok(None),
        Some(name) => {
            check_name(name, &join(path, field))?;
            Ok(Some(name.to_owned()))
        }
    }
}

fn check_name(name: &str, path: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ConfigError::new(
            path,
            format!(
                "{name:?} is not a valid name: use 1 to {MAX_NAME_LEN} ASCII letters, digits, \
                 '_' and '-', in parts separated by single dots (Envoy publishes it as filter \
                 state `wasm.<name>`)"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::authn::config::parse;
    use crate::authn::publish::ProviderPublish;

    fn config(provider: Value, top: Value) -> String {
        let mut p = json!({"remote_jwks": {"http_uri": {"uri": "https://idp.test/keys", "cluster": "idp"}}});
        p.as_object_mut()
            .unwrap()
            .extend(provider.as_object().unwrap().clone());
        let mut cfg = json!({"providers": {"p": p}});
        cfg.as_object_mut()
            .unwrap()
            .extend(top.as_object().unwrap().clone());
        cfg.to_string()
    }

    fn error(provider: Value, top: Value) -> (String, String) {
        let e = parse(&config(provider, top)).unwrap_err();
        (e.path, e.message)
    }

    #[test]
    fn accepted_names_and_defaults() {
        let policy = parse(&config(
            json!({"payload_in_metadata": "ngx.jwt_payload", "header_in_metadata": "jwt-header",
                   "normalize_payload_in_metadata": {"space_delimited_claims": ["scope", "scp"]}}),
            json!({"outcome_in_metadata": "jwt_outcome"}),
        ))
        .unwrap();
        assert_eq!(
            policy.providers[0].publish,
            ProviderPublish {
                payload: Some("ngx.jwt_payload".into()),
                header: Some("jwt-header".into()),
                space_delimited_claims: vec!["scope".into(), "scp".into()],
            }
        );
        assert_eq!(policy.outcome_in_metadata.as_deref(), Some("jwt_outcome"));

        // jwt_authn's proto defaults (a dumped config): nothing published.
        let policy = parse(&config(
            json!({"payload_in_metadata": "", "header_in_metadata": "",
                   "normalize_payload_in_metadata": {"space_delimited_claims": []}}),
            json!({}),
        ))
        .unwrap();
        assert!(policy.providers[0].publish.is_empty());
        assert_eq!(policy.outcome_in_metadata, None);
    }

    #[test]
    fn bad_names_name_their_field() {
        for (field, bad) in [
            ("payload_in_metadata", "jwt payload"),
            ("payload_in_metadata", "wasm.x:PLAIN"),
            ("header_in_metadata", ".jwt"),
            ("header_in_metadata", "a..b"),
            ("payload_in_metadata", "jwt\"x"),
        ] {
            let (path, message) = error(json!({ field: bad }), json!({}));
            assert_eq!(path, format!("providers.p.{field}"), "{bad:?}");
            assert!(message.contains("is not a valid name"), "{message}");
        }
        let long = "a".repeat(129);
        let (path, message) = error(json!({}), json!({"outcome_in_metadata": long}));
        assert_eq!(path, "outcome_in_metadata");
        assert!(message.contains("is not a valid name"), "{message}");

        let (path, message) = error(json!({}), json!({"outcome_in_metadata": ""}));
        assert_eq!(
            (path.as_str(), message.as_str()),
            (
                "outcome_in_metadata",
                "must not be empty: leave it out to publish no outcome"
            )
        );
        let (path, _) = error(json!({"payload_in_metadata": 7}), json!({}));
        assert_eq!(path, "providers.p.payload_in_metadata");
    }

    #[test]
    fn clashes_and_useless_settings() {
        let (path, message) = error(
            json!({"payload_in_metadata": "jwt", "header_in_metadata": "jwt"}),
            json!({}),
        );
        assert_eq!(path, "providers.p.header_in_metadata");
        assert!(
            message.contains("also this provider's payload_in_metadata"),
            "{message}"
        );

        let (path, message) = error(
            json!({"header_in_metadata": "jwt"}),
            json!({"outcome_in_metadata": "jwt"}),
        );
        assert_eq!(path, "outcome_in_metadata");
        assert!(
            message.contains("providers.p.header_in_metadata"),
            "{message}"
        );

        let (path, message) = error(
            json!({"normalize_payload_in_metadata": {"space_delimited_claims": ["scope"]}}),
            json!({}),
        );
        assert_eq!(path, "providers.p.normalize_payload_in_metadata");
        assert!(message.contains("without payload_in_metadata"), "{message}");

        let (path, _) = error(
            json!({"payload_in_metadata": "jwt",
                   "normalize_payload_in_metadata": {"space_delimited_claims": [""]}}),
            json!({}),
        );
        assert_eq!(
            path,
            "providers.p.normalize_payload_in_metadata.space_delimited_claims[0]"
        );

        let (path, message) = error(json!({"failed_status_in_metadata": "f"}), json!({}));
        assert_eq!(path, "providers.p.failed_status_in_metadata");
        assert!(message.contains("outcome_in_metadata"), "{message}");
    }
}
