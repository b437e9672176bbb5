//! The `[telemetry]` section: the metrics label budget and the OpenTelemetry trace export
//! (`otlp_endpoint`, `service_name`, `otlp_headers`, `sample_ratio`), validated once here so
//! the exporter gets a parsed URL, header names and values, and a ratio in `0.0..=1.0`.
//!
//! Owns `TelemetryConfig` and `OtlpConfig`; the exporter itself lives in the gateway's `trace`
//! module.

use crate::ConfigError;
use crate::raw::RawTelemetry;
use http::{HeaderName, HeaderValue, Uri};

/// Metrics and traces settings: `[telemetry]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Tenants that get a metrics label of their own; later ones share the label `other`, so
    /// the number of series stays bounded however many tenants exist.
    pub max_tenant_labels: usize,
    /// Where traces go; `None` (no `otlp_endpoint`) records no spans at all.
    pub otlp: Option<OtlpConfig>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            max_tenant_labels: 100,
            otlp: None,
        }
    }
}

/// OTLP/HTTP trace export (JSON encoding).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The full URL spans are POSTed to: `otlp_endpoint` + `/v1/traces` (kept as given when
    /// it already ends with `/v1/traces`).
    pub traces_url: Uri,
    /// The resource's `service.name`.
    pub service_name: String,
    /// Extra request headers (a collector's API key, a tenant header); values are marked
    /// sensitive so they never show in `Debug`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Share of new traces (those without a sampled parent) that are recorded, `0.0..=1.0`.
    pub sample_ratio: f64,
}

pub(crate) fn telemetry_config(raw: &RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
    let defaults = TelemetryConfig::default();
    let otlp = match raw.otlp_endpoint.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(endpoint) => Some(OtlpConfig {
            traces_url: traces_url(endpoint)?,
            service_name: service_name(raw.service_name.as_deref())?,
            headers: headers(raw)?,
            sample_ratio: sample_ratio(raw.sample_ratio)?,
        }),
    };
    Ok(TelemetryConfig {
        max_tenant_labels: raw.max_tenant_labels.unwrap_or(defaults.max_tenant_labels),
        otlp,
    })
}

fn traces_url(endpoint: &str) -> Result<Uri, ConfigError> {
    const KEY: &str = "telemetry.otlp_endpoint";
    let base = endpoint.trim_end_matches('/');
    let full = if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    };
    let uri: Uri = full
        .parse()
        .map_err(|err| ConfigError::new(KEY, format!("`{endpoint}` is not a URL: {err}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(ConfigError::new(
                KEY,
                format!("`{endpoint}` must start with http:// or https://"),
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ConfigError::new(KEY, format!("`{endpoint}` names no host")));
    }
    Ok(uri)
}

fn service_name(raw: Option<&str>) -> Result<String, ConfigError> {
    match raw.map(str::trim) {
        None => Ok("flowgate".to_owned()),
        Some("") => Err(ConfigError::new(
            "telemetry.service_name",
            "must not be empty",
        )),
        Some(name) => Ok(name.to_owned()),
    }
}

fn headers(raw: &RawTelemetry) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    raw.otlp_headers
        .iter()
        .map(|(name, value)| {
            let key = format!("telemetry.otlp_headers.{name}");
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(&key, "is not a valid header name"))?;
            let mut header_value = HeaderValue::from_str(value)
                .map_err(|_| ConfigError::new(&key, "is not a valid header value"))?;
            header_value.set_sensitive(true);
            Ok((header_name, header_value))
        })
        .collect()
}

fn sample_ratio(raw: Option<f64>) -> Result<f64, ConfigError> {
    match raw {
        None => Ok(1.0),
        Some(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        Some(ratio) => Err(ConfigError::new(
            "telemetry.sample_ratio",
            format!("{ratio} is not between 0.0 and 1.0"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::from_sources;
    use std::collections::BTreeMap;

    fn config(telemetry: &str) -> Result<crate::Config, crate::ConfigError> {
        from_sources(Some(telemetry), &BTreeMap::new(), true)
    }

    #[test]
    fn no_endpoint_means_no_export() {
        let parsed = config("[telemetry]\nservice_name = \"gw\"\n").expect("valid");
        assert_eq!(parsed.telemetry.otlp, None);
    }

    #[test]
    fn endpoint_gets_the_traces_path_and_defaults() {
        let parsed =
            config("[telemetry]\notlp_endpoint = \"http://collector:4318/\"\n").expect("valid");
        let otlp = parsed.telemetry.otlp.expect("export configured");
        assert_eq!(
            otlp.traces_url.to_string(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(otlp.service_name, "flowgate");
        assert!((otlp.sample_ratio - 1.0).abs() < f64::EPSILON);
        assert!(otlp.headers.is_empty());

        let parsed = config(
            "[telemetry]\notlp_endpoint = \"https://otlp.example/v1/traces\"\nservice_name = \"edge\"\nsample_ratio = 0.25\n[telemetry.otlp_headers]\nx-honeycomb-team = \"abc\"\n",
        )
        .expect("valid");
        let otlp = parsed.telemetry.otlp.expect("export configured");
        assert_eq!(
            otlp.traces_url.to_string(),
            "https://otlp.example/v1/traces"
        );
        assert_eq!(otlp.service_name, "edge");
        assert!((otlp.sample_ratio - 0.25).abs() < f64::EPSILON);
        assert_eq!(otlp.headers.len(), 1);
        assert_eq!(otlp.headers[0].0.as_str(), "x-honeycomb-team");
        assert!(
            !format!("{:?}", otlp.headers).contains("abc"),
            "header values are redacted in Debug"
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        for (text, key) in [
            (
                "[telemetry]\notlp_endpoint = \"collector:4318\"\n",
                "telemetry.otlp_endpoint",
            ),
            (
                "[telemetry]\notlp_endpoint = \"ftp://collector\"\n",
                "telemetry.otlp_endpoint",
            ),
            (
                "[telemetry]\notlp_endpoint = \"http://c\"\nsample_ratio = 1.5\n",
                "telemetry.sample_ratio",
            ),
            (
                "[telemetry]\notlp_endpoint = \"http://c\"\nservice_name = \" \"\n",
                "telemetry.service_name",
            ),
            (
                "[telemetry]\notlp_endpoint = \"http://c\"\n[telemetry.otlp_headers]\n\"bad name\" = \"x\"\n",
                "telemetry.otlp_headers.bad name",
            ),
            (
                "[telemetry]\notlp_endpoint = \"http://c\"\notlp_header = 1\n",
                "telemetry.otlp_header",
            ),
        ] {
            let error = config(text).expect_err(text);
            assert!(
                error.to_string().contains(key),
                "`{text}`: {error} should name {key}"
            );
        }
    }
}
