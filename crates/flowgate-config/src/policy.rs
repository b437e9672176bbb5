//! The `[policy]` section: where the node's global rules come from when they are shipped as a
//! signed bundle (`flowgate rules compile --sign`) instead of `[[rules]]` tables, and whether
//! the bundle must carry a valid Ed25519 signature from the trusted key.
//!
//! Owns `PolicyConfig` (validated from the file in one step) and `Config::apply_policy_bundle`,
//! which checks a bundle's bytes against these settings and puts its rules in `Config::rules`.
//! Reading the bundle file is the caller's job (the CLI), like reading `flowgate.toml`.

use crate::raw::RawPolicy;
use crate::{Config, ConfigError};
use flowgate_policy::bundle::{
    BundleError, BundleMetadata, VerifyingKey, read_bundle_unverified, verify_bundle,
    verifying_key_from_base64,
};
use std::path::PathBuf;

/// Validated `[policy]` settings.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    /// A policy bundle whose rules replace `[[rules]]` (which must then be empty). Relative
    /// paths are resolved by the caller against its working directory.
    pub bundle: Option<PathBuf>,
    /// Refuse a bundle that is unsigned, altered, or signed by another key (default: true).
    pub require_signature: bool,
    /// The trusted Ed25519 public key (base64 of 32 bytes); required when a bundle is
    /// configured and signatures are required. When set, a signed bundle is verified even if
    /// signatures are not required.
    pub public_key: Option<VerifyingKey>,
    /// Name and revision of the bundle in use, once `apply_policy_bundle` accepted it.
    pub loaded: Option<BundleMetadata>,
}

pub(crate) fn policy_config(
    raw: &RawPolicy,
    file_rules: usize,
) -> Result<PolicyConfig, ConfigError> {
    let public_key = match raw.bundle_public_key.as_deref() {
        Some(text) => Some(verifying_key_from_base64(text).map_err(|_| {
            ConfigError::new(
                "policy.bundle_public_key",
                "must be the base64 of a 32-byte Ed25519 public key (printed by `flowgate rules keygen`)",
            )
        })?),
        None => None,
    };
    let require_signature = raw.require_signature.unwrap_or(true);
    let bundle = match raw.bundle.as_deref().map(str::trim) {
        None => None,
        Some("") => return Err(ConfigError::new("policy.bundle", "must not be empty")),
        Some(path) => Some(PathBuf::from(path)),
    };
    if bundle.is_some() {
        if require_signature && public_key.is_none() {
            return Err(ConfigError::new(
                "policy.bundle_public_key",
                "required when policy.require_signature is true (the default)",
            ));
        }
        if file_rules > 0 {
            return Err(ConfigError::new(
                "rules",
                "cannot be combined with policy.bundle: put the rules in the bundle",
            ));
        }
    }
    Ok(PolicyConfig {
        bundle,
        require_signature,
        public_key,
        loaded: None,
    })
}

impl Config {
    /// Checks a policy bundle document (the bytes of the file named by `policy.bundle`)
    /// against the `[policy]` settings and makes its rules the node's global rules. With a
    /// required signature the bundle must be signed by the trusted key and unaltered; without
    /// one, a trusted key still verifies a signed bundle, and an unsigned bundle is accepted.
    ///
    /// # Errors
    /// One line naming `policy.bundle` and why the bundle was refused.
    pub fn apply_policy_bundle(&mut self, document: &[u8]) -> Result<(), ConfigError> {
        let refused = |err: BundleError| {
            let shown = self
                .policy
                .bundle
                .as_ref()
                .map_or_else(String::new, |path| format!("{}: ", path.display()));
            ConfigError::new("policy.bundle", format!("{shown}{err}"))
        };
        let bundle = match (&self.policy.public_key, self.policy.require_signature) {
            (Some(key), true) => verify_bundle(document, key),
            (None, true) => Err(BundleError::InvalidKey { which: "verifying" }),
            (Some(key), false) => match verify_bundle(document, key) {
                Err(BundleError::Unsigned) => read_bundle_unverified(document),
                other => other,
            },
            (None, false) => read_bundle_unverified(document),
        }
        .map_err(refused)?;
        self.rules = bundle.rules;
        self.policy.loaded = Some(bundle.metadata);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{ConfigError, from_sources};
    use base64::Engine as _;
    use flowgate_policy::bundle::{BundleMetadata, PolicyBundle, SigningKey};
    use flowgate_policy::{Action, Rule, RuleMatch};
    use flowgate_types::MasterKey;
    use std::collections::BTreeMap;

    fn production_env() -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "FLOWGATE_ADMIN_API_KEY".to_owned(),
                "a-very-long-random-admin-key-0123456789".to_owned(),
            ),
            (
                "FLOWGATE_MASTER_KEY".to_owned(),
                MasterKey::generate().to_base64(),
            ),
        ])
    }

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn public_key(seed: u8) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(signing_key(seed).verifying_key().to_bytes())
    }

    fn bundle() -> PolicyBundle {
        PolicyBundle::new(
            BundleMetadata {
                name: "acme".to_owned(),
                version: 2,
                created_at: None,
                description: String::new(),
            },
            None,
            vec![Rule::new(
                "falcon",
                RuleMatch::keywords(["project falcon"]),
                Action::Block,
            )],
        )
    }

    fn config_with(policy: &str) -> Result<crate::Config, ConfigError> {
        from_sources(Some(policy), &production_env(), false)
    }

    fn must(result: Result<crate::Config, ConfigError>) -> crate::Config {
        result.unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn policy_section_defaults_and_validation() {
        let config = must(config_with(""));
        assert!(config.policy.bundle.is_none());
        assert!(config.policy.require_signature);

        let key = public_key(1);
        let config = must(config_with(&format!(
            "[policy]\nbundle = \"rules.bundle\"\nbundle_public_key = \"{key}\"\n"
        )));
        assert_eq!(
            config.policy.bundle.as_deref(),
            Some(std::path::Path::new("rules.bundle"))
        );
        assert!(config.policy.public_key.is_some());

        let unsigned_ok = must(config_with(
            "[policy]\nbundle = \"b.json\"\nrequire_signature = false\n",
        ));
        assert!(!unsigned_ok.policy.require_signature);

        for (file, key) in [
            (
                "[policy]\nbundle = \"b.json\"\n",
                "policy.bundle_public_key",
            ),
            (
                "[policy]\nbundle_public_key = \"not-a-key\"\n",
                "policy.bundle_public_key",
            ),
            ("[policy]\nbundle = \"\"\n", "policy.bundle"),
            ("[policy]\nbundel = \"b.json\"\n", "policy.bundel"),
            (
                "[policy]\nbundle = \"b.json\"\nrequire_signature = false\n[[rules]]\nid = \"r\"\naction = \"flag\"\nmatch = { keywords = [\"x\"] }\n",
                "rules",
            ),
        ] {
            match config_with(file) {
                Ok(_) => panic!("expected an error for {file}"),
                Err(err) => {
                    assert_eq!(err.key, key, "{file}: {err}");
                    assert!(!err.to_string().contains('\n'));
                }
            }
        }
    }

    #[test]
    fn a_signed_bundle_supplies_the_rules_and_an_altered_one_is_refused() {
        let file = format!(
            "[policy]\nbundle = \"acme.bundle\"\nbundle_public_key = \"{}\"\n",
            public_key(1)
        );
        let signed = bundle()
            .sign(&signing_key(1))
            .unwrap_or_else(|err| panic!("{err}"));

        let mut config = must(config_with(&file));
        config
            .apply_policy_bundle(signed.as_bytes())
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.rules, bundle().rules);
        assert_eq!(
            config.policy.loaded.as_ref().map(|meta| meta.version),
            Some(2)
        );

        let altered = signed.replace("project falcon", "project eagle");
        let err = must(config_with(&file))
            .apply_policy_bundle(altered.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("an altered bundle must be refused"));
        assert_eq!(err.key, "policy.bundle");
        assert!(err.message.starts_with("acme.bundle: "), "{err}");
        assert!(err.message.contains("altered"), "{err}");

        let unsigned = bundle()
            .to_unsigned_document()
            .unwrap_or_else(|err| panic!("{err}"));
        let err = must(config_with(&file))
            .apply_policy_bundle(unsigned.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("an unsigned bundle must be refused"));
        assert!(err.message.contains("not signed"), "{err}");

        let other_signer = bundle()
            .sign(&signing_key(2))
            .unwrap_or_else(|err| panic!("{err}"));
        let err = must(config_with(&file))
            .apply_policy_bundle(other_signer.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("a bundle signed by another key must be refused"));
        assert!(err.message.contains("signed by key"), "{err}");
    }

    #[test]
    fn without_required_signatures_unsigned_bundles_load_but_altered_ones_do_not() {
        let file = format!(
            "[policy]\nbundle = \"b.json\"\nrequire_signature = false\nbundle_public_key = \"{}\"\n",
            public_key(1)
        );
        let unsigned = bundle()
            .to_unsigned_document()
            .unwrap_or_else(|err| panic!("{err}"));
        let mut config = must(config_with(&file));
        config
            .apply_policy_bundle(unsigned.as_bytes())
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.rules.len(), 1);

        let altered = bundle()
            .sign(&signing_key(1))
            .unwrap_or_else(|err| panic!("{err}"))
            .replace("project falcon", "project eagle");
        assert!(
            must(config_with(&file))
                .apply_policy_bundle(altered.as_bytes())
                .is_err()
        );
    }
}
